//go:build tools

// Package tools records the program this module builds, so go.sum covers it. The
// adapter is built from here (not `go install …@version`) so that the build uses only
// the module proxy's download endpoints and the versions pinned in go.sum.
package tools

import (
	_ "sigs.k8s.io/prometheus-adapter/cmd/adapter"
)
