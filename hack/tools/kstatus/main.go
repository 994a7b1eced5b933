// Command kstatus judges Kubernetes objects the way Flux, kpt and other GitOps tools do:
// with sigs.k8s.io/cli-utils/pkg/kstatus. It reads a JSON array of objects on stdin and
// writes a JSON array of {"status", "message"} in the same order (see hack/install-kstatus
// and tests/gitops/test_kstatus.py).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		fail(fmt.Errorf("stdin must be a JSON array of objects: %w", err))
	}
	out := make([]verdict, 0, len(items))
	for i, item := range items {
		// UnmarshalJSON keeps integers as int64, as an API server response decodes.
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(item); err != nil {
			fail(fmt.Errorf("object %d: %w", i, err))
		}
		result, err := status.Compute(obj)
		if err != nil {
			fail(fmt.Errorf("object %d (%s): %w", i, obj.GetName(), err))
		}
		out = append(out, verdict{Status: result.Status.String(), Message: result.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
