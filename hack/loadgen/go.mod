module modelserve/hack/loadgen

go 1.22
