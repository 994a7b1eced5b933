// Command etcd is upstream etcd's entry point: the root module of go.etcd.io/etcd
// carries replace directives, so `go install` cannot build it directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
