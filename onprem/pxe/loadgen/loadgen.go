// Package loadgen simulates a boot storm against a kiln boot server: many machines booting at once,
// each fetching its iPXE script, its Ignition (from the URL in the script, as a real machine does,
// when the machine is armed: a script without one installs nothing) and a boot asset, and reports
// requests per second, latency percentiles and asset throughput.
//
// It only targets loopback addresses: a load test of a server runs on the machine that serves.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config is one boot storm.
type Config struct {
	// BaseURL of the boot server (a loopback address).
	BaseURL string
	// MACs of the machines to simulate (they must be in the server's inventory).
	MACs []string
	// Rounds each machine fetches its script, and the Ignition its URL names (a reboot loop: an armed
	// machine's first round installs it, and the later ones get the script that installs nothing).
	// Defaults to 1.
	Rounds int
	// Asset, when set, is fetched once per machine after its last round (a path under /assets/).
	Asset string
	// Timeout bounds the whole storm. Defaults to 2 minutes.
	Timeout time.Duration
	// Rate, when set, makes the storm open-loop: boots (a script and then an Ignition request) start
	// at Rate/2 per second, cycling through the machines, whether or not earlier ones have finished,
	// Rounds×len(MACs) boots in all. Without it every machine starts at once and loops (closed loop:
	// 1,000 machines means 1,000 requests in flight, and latency is queueing).
	Rate float64
}

// Result of a storm.
type Result struct {
	Machines int
	// Requests counts script and Ignition requests; Errors those that failed; Configs the Ignition
	// configs fetched.
	Requests, Errors, Configs int
	// Elapsed is the time from the first to the last script or Ignition response.
	Elapsed time.Duration
	// RPS is Requests/Elapsed.
	RPS float64
	// P50, P99 and Max are the latencies of script and Ignition requests.
	P50, P99, Max time.Duration
	// AssetBytes fetched in AssetElapsed (all machines at once).
	AssetBytes   int64
	AssetElapsed time.Duration
	// FirstError is an example of what failed.
	FirstError error
}

// AssetMBps is the aggregate asset throughput in MB/s.
func (r Result) AssetMBps() float64 {
	if r.AssetElapsed <= 0 {
		return 0
	}
	return float64(r.AssetBytes) / 1e6 / r.AssetElapsed.Seconds()
}

func (r Result) String() string {
	s := fmt.Sprintf("%d machines: %d script+ignition requests (%d configs) in %s = %.0f req/s, p50 %s, p99 %s, max %s, %d errors",
		r.Machines, r.Requests, r.Configs, r.Elapsed.Round(time.Millisecond), r.RPS, r.P50.Round(10*time.Microsecond),
		r.P99.Round(10*time.Microsecond), r.Max.Round(10*time.Microsecond), r.Errors)
	if r.AssetBytes > 0 {
		s += fmt.Sprintf("; assets %.0f MB in %s = %.0f MB/s", float64(r.AssetBytes)/1e6, r.AssetElapsed.Round(time.Millisecond), r.AssetMBps())
	}
	if r.FirstError != nil {
		s += "; first error: " + r.FirstError.Error()
	}
	return s
}

var ignitionURL = regexp.MustCompile(`ignition\.config\.url=(\S+)`)

// Run runs the storm: every machine starts at once.
func Run(ctx context.Context, cfg Config) (Result, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: base URL: %w", err)
	}
	if !isLoopback(u.Hostname()) {
		return Result{}, fmt.Errorf("loadgen: %s is not a loopback address: load tests run against a server on this machine", u.Hostname())
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	tr := &http.Transport{MaxIdleConns: len(cfg.MACs) + 10, MaxIdleConnsPerHost: len(cfg.MACs) + 10, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	base := strings.TrimRight(cfg.BaseURL, "/")

	var (
		mu        sync.Mutex
		lat       = make([]time.Duration, 0, 2*len(cfg.MACs)*cfg.Rounds)
		errs      int
		configs   int
		firstErr  error
		first     time.Time
		last      time.Time
		assetN    int64
		assetFrom time.Time
		assetTo   time.Time
	)
	fail := func(err error) {
		mu.Lock()
		errs++
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	get := func(u string, keep bool) ([]byte, time.Duration, error) {
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		var body []byte
		if keep {
			body, err = io.ReadAll(resp.Body)
		} else {
			var n int64
			n, err = io.Copy(io.Discard, resp.Body)
			mu.Lock()
			assetN += n
			mu.Unlock()
		}
		d := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return body, d, err
	}
	record := func(d time.Duration) {
		now := time.Now()
		mu.Lock()
		lat = append(lat, d)
		if first.IsZero() || now.Add(-d).Before(first) {
			first = now.Add(-d)
		}
		if now.After(last) {
			last = now
		}
		mu.Unlock()
	}

	// Two phases, each with every machine at once: scripts and Ignition (the rounds), then the
	// assets, so that each is measured on its own.
	boot := func(mac string) bool {
		script, d, err := get(base+"/ipxe?mac="+url.QueryEscape(mac), true)
		if err != nil {
			fail(err)
			return false
		}
		record(d)
		m := ignitionURL.FindSubmatch(script)
		if m == nil {
			// Not armed: this boot installs nothing.
			return true
		}
		if _, d, err = get(string(m[1]), true); err != nil {
			fail(err)
			return false
		}
		record(d)
		mu.Lock()
		configs++
		mu.Unlock()
		return true
	}
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		every := time.Duration(float64(2*time.Second) / cfg.Rate)
		t0 := time.Now()
		for i := range cfg.Rounds * len(cfg.MACs) {
			if ctx.Err() != nil {
				break
			}
			time.Sleep(time.Until(t0.Add(time.Duration(i) * every)))
			mac := cfg.MACs[i%len(cfg.MACs)]
			wg.Go(func() { boot(mac) })
		}
		wg.Wait()
	}
	start := make(chan struct{})
	for _, mac := range cfg.MACs {
		if cfg.Rate > 0 {
			break
		}
		wg.Go(func() {
			<-start
			for range cfg.Rounds {
				if !boot(mac) {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if cfg.Asset != "" && ctx.Err() == nil {
		assetFrom = time.Now()
		for _, mac := range cfg.MACs {
			wg.Go(func() {
				if _, _, err := get(base+"/assets/"+cfg.Asset+"?mac="+url.QueryEscape(mac), false); err != nil {
					fail(err)
				}
			})
		}
		wg.Wait()
		assetTo = time.Now()
	}

	r := Result{Machines: len(cfg.MACs), Requests: len(lat), Errors: errs, Configs: configs, FirstError: firstErr,
		AssetBytes: assetN, AssetElapsed: assetTo.Sub(assetFrom)}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.Elapsed = last.Sub(first)
		r.RPS = float64(len(lat)) / r.Elapsed.Seconds()
		r.P50 = lat[len(lat)*50/100]
		r.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		r.Max = lat[len(lat)-1]
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("loadgen: %w", ctx.Err())
	}
	if r.Requests == 0 {
		return r, errors.New("loadgen: no request succeeded")
	}
	return r, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
