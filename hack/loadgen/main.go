// loadgen: a closed-loop HTTP load generator for hack/bench-runtime.
//
// Why Go and not the Python client: at thousands of 300 KB requests per second an
// asyncio client spends as much CPU as the server it measures, on the same cores. This
// one costs a fraction of that, so the server's share of the machine is what is timed.
// Same output as bench_runtime_client.py: one JSON line with throughput, p50/p99, errors.
package main

import (
	"bytes"
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
)

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
	flag.Var(&hdrs, "H", "header 'Name: value' (repeatable)")
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
	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: *concurrency,
			MaxConnsPerHost:     *concurrency,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			// The default 4 KiB buffers turn one 300 KB request into ~75 write calls,
			// which showed up as client time in every latency measured.
			WriteBufferSize: max(64<<10, len(body)+4096),
			ReadBufferSize:  64 << 10,
		},
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
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				req, _ := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
				req.Header = header.Clone()
				ok := false
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = err == nil && resp.StatusCode == http.StatusOK
				}
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
		}()
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
