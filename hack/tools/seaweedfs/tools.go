//go:build tools

// Package tools pins SeaweedFS (its `weed` command runs the S3 gateway the fetch tests
// and e2e download models from). A wrapper module because SeaweedFS's go.mod carries a
// replace directive, which `go install module@version` refuses.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
