//go:build tools

// Package tools pins Traefik (its Kubernetes Gateway provider is the Gateway API
// implementation the gateway e2e sends traffic through). A wrapper module because
// Traefik's go.mod carries replace directives, which `go install module@version` refuses.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
