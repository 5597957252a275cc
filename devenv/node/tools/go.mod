// Small test-environment tools for the local node: the pod sandbox (pause) program and an image
// archive writer built on go-containerregistry. Test tooling only; the product is TypeScript.
module keyward.dev/devenv/node/tools

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)
