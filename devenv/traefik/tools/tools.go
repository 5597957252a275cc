//go:build tools

// Package tools pins the command built from this module so `go mod tidy` keeps it.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
