// Command imagearchive writes a container image as a docker-archive tarball (what
// `ctr images import` and `docker load` read) without a container engine or a registry: an
// optional base image archive, plus one layer per directory tree, plus the image config.
//
// Layers are reproducible (sorted entries, owner 0:0, fixed timestamps), so the same inputs give
// the same image digest.
package main

import (
	"archive/tar"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// epoch is every file's and the config's timestamp: a rebuild from the same inputs must not
// change the digest.
var epoch = time.Unix(0, 0).UTC()

func main() {
	var layers, envs, labels list
	out := flag.String("out", "", "docker-archive file to write")
	tag := flag.String("tag", "", "image reference recorded in the archive, e.g. keyward:dev")
	base := flag.String("base", "", "docker-archive of the base image (default: empty)")
	entrypoint := flag.String("entrypoint", "", "entrypoint as a JSON array")
	cmd := flag.String("cmd", "", "command as a JSON array")
	user := flag.String("user", "", "user (numeric uid[:gid])")
	workdir := flag.String("workdir", "", "working directory")
	flag.Var(&layers, "layer", "directory whose tree becomes a layer rooted at / (repeatable)")
	flag.Var(&envs, "env", "KEY=VALUE (repeatable)")
	flag.Var(&labels, "label", "KEY=VALUE (repeatable)")
	flag.Parse()
	if *out == "" || *tag == "" {
		fail(fmt.Errorf("--out and --tag are required"))
	}
	if err := run(*out, *tag, *base, layers, envs, labels, *entrypoint, *cmd, *user, *workdir); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "imagearchive:", err)
	os.Exit(1)
}

func run(out, tag, base string, layers, envs, labels []string, entrypoint, cmd, user, workdir string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	img := empty.Image
	if base != "" {
		if img, err = tarball.ImageFromPath(base, nil); err != nil {
			return fmt.Errorf("base %s: %w", base, err)
		}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".layers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, dir := range layers {
		tarPath := filepath.Join(tmp, fmt.Sprintf("layer-%d.tar", i))
		if err := writeLayerTar(dir, tarPath); err != nil {
			return fmt.Errorf("layer %s: %w", dir, err)
		}
		layer, err := tarball.LayerFromFile(tarPath)
		if err != nil {
			return err
		}
		if img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "imagearchive --layer " + filepath.Base(dir)},
		}); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	if entrypoint != "" {
		if err := json.Unmarshal([]byte(entrypoint), &cf.Config.Entrypoint); err != nil {
			return fmt.Errorf("--entrypoint: %w", err)
		}
	}
	if cmd != "" {
		if err := json.Unmarshal([]byte(cmd), &cf.Config.Cmd); err != nil {
			return fmt.Errorf("--cmd: %w", err)
		}
	}
	if user != "" {
		cf.Config.User = user
	}
	if workdir != "" {
		cf.Config.WorkingDir = workdir
	}
	cf.Config.Env = mergeEnv(cf.Config.Env, envs)
	if len(labels) > 0 && cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for _, kv := range labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--label %q is not KEY=VALUE", kv)
		}
		cf.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	partial := out + ".partial"
	if err := tarball.WriteToFile(partial, ref, img); err != nil {
		return err
	}
	if err := os.Rename(partial, out); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Println(digest.String())
	return nil
}

// mergeEnv overrides the base image's variables of the same name, as Dockerfile ENV does.
func mergeEnv(baseEnv, envs []string) []string {
	result := append([]string(nil), baseEnv...)
	for _, kv := range envs {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, existing := range result {
			if strings.HasPrefix(existing, k+"=") {
				result[i], replaced = kv, true
			}
		}
		if !replaced {
			result = append(result, kv)
		}
	}
	return result
}

// writeLayerTar archives dir's tree with paths relative to it, in lexical order, owned by root
// (the image's files are read-only to its non-root user) and stamped with epoch.
func writeLayerTar(dir, tarPath string) error {
	f, err := os.Create(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
