// loadgen: a closed-loop HTTP or gRPC load generator for hack/bench-runtime.
//
// Why Go and not the Python client: at thousands of 300 KB requests per second an
// asyncio client spends as much CPU as the server it measures, on the same cores. This
// one costs a fraction of that, so the server's share of the machine is what is timed.
// Same output as bench_runtime_client.py: one JSON line with throughput, p50/p99, errors.
//
// With -grpc HOST:PORT it calls -method instead, sending the body file as the already
// serialized request message (the caller builds it with the proto), so no generated Go
// code is needed: a codec that passes bytes through.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
)

// rawCodec sends and receives messages as the bytes they already are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" } // the content-subtype servers expect

var _ encoding.Codec = rawCodec{}

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	url := flag.String("url", "", "URL to POST to")
	bodyFile := flag.String("body", "", "file holding the request body")
	concurrency := flag.Int("c", 1, "requests in flight (one connection each)")
	warmup := flag.Duration("warmup", 2*time.Second, "load before measuring")
	duration := flag.Duration("duration", 6*time.Second, "measured window")
	var hdrs headers
	flag.Var(&hdrs, "H", "header 'Name: value' (repeatable; gRPC: metadata)")
	grpcTarget := flag.String("grpc", "", "gRPC HOST:PORT instead of -url")
	method := flag.String("method", "/inference.GRPCInferenceService/ModelInfer", "gRPC method")
	conns := flag.Int("conns", 1, "gRPC connections, calls spread over them")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	header := http.Header{}
	for _, h := range hdrs {
		name, value, ok := strings.Cut(h, ": ")
		if !ok {
			fmt.Fprintf(os.Stderr, "loadgen: header %q is not 'Name: value'\n", h)
			os.Exit(2)
		}
		header.Set(name, value)
	}
	call := httpCall(*url, body, header, *concurrency)
	if *grpcTarget != "" {
		call = grpcCall(*grpcTarget, *method, body, header, *conns)
	}
	start := time.Now()
	measureFrom := start.Add(*warmup)
	end := measureFrom.Add(*duration)

	var mu sync.Mutex
	var all []time.Duration
	errors := 0
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				ok := call(worker)
				if !t0.Before(measureFrom) {
					if ok {
						mine = append(mine, time.Since(t0))
					} else {
						bad++
					}
				}
			}
			mu.Lock()
			all = append(all, mine...)
			errors += bad
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) any {
		if len(all) == 0 {
			return nil
		}
		i := int(p * float64(len(all)))
		if i >= len(all) {
			i = len(all) - 1
		}
		return float64(all[i].Microseconds()) / 1000
	}
	out, _ := json.Marshal(map[string]any{
		"concurrency": *concurrency,
		"throughput":  float64(len(all)) / duration.Seconds(),
		"p50_ms":      pct(0.50),
		"p99_ms":      pct(0.99),
		"errors":      errors,
	})
	fmt.Println(string(out))
}

// grpcCall: one unary call per request over `conns` connections (worker i uses i % conns).
func grpcCall(target, method string, body []byte, header http.Header, conns int) func(int) bool {
	md := metadata.MD{}
	for name, values := range header {
		md.Append(strings.ToLower(name), values...)
	}
	clients := make([]*grpc.ClientConn, max(conns, 1))
	for i := range clients {
		conn, err := grpc.NewClient(target,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
				grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		clients[i] = conn
	}
	return func(worker int) bool {
		ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md),
			60*time.Second)
		defer cancel()
		in, out := body, []byte(nil)
		return clients[worker%len(clients)].Invoke(ctx, method, &in, &out) == nil
	}
}

// httpCall: one POST per request, one connection per worker.
func httpCall(url string, body []byte, header http.Header, concurrency int) func(int) bool {
	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: concurrency,
			MaxConnsPerHost:     concurrency,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			// The default 4 KiB buffers turn one 300 KB request into ~75 write calls,
			// which showed up as client time in every latency measured.
			WriteBufferSize: max(64<<10, len(body)+4096),
			ReadBufferSize:  64 << 10,
		},
	}
	return func(int) bool {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err == nil && resp.StatusCode == http.StatusOK
	}
}
