package pxe

import (
	"context"
	"fmt"
	"sync"
)

// RenderFunc renders one machine's Ignition config.
type RenderFunc func(m *Machine) ([]byte, error)

// IgnitionCache renders each machine's config once and serves it from memory, so that a boot storm
// costs no rendering. Safe for concurrent use.
type IgnitionCache struct {
	render RenderFunc

	mu      sync.RWMutex
	configs map[string][]byte
}

// NewIgnitionCache returns an empty cache over render.
func NewIgnitionCache(render RenderFunc) *IgnitionCache {
	return &IgnitionCache{render: render, configs: map[string][]byte{}}
}

// Prerender renders the configs of machines on workers goroutines and replaces the cached ones; it
// returns every failure at once and keeps the old config of a machine that failed.
func (c *IgnitionCache) Prerender(machines []Machine, workers int) error {
	if workers < 1 {
		workers = 1
	}
	type result struct {
		mac string
		cfg []byte
		err error
	}
	jobs := make(chan *Machine)
	results := make(chan result)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for m := range jobs {
				cfg, err := c.render(m)
				if err != nil {
					err = fmt.Errorf("pxe: ignition for %s (%s): %w", m.Name, m.MAC, err)
				}
				results <- result{m.MAC, cfg, err}
			}
		})
	}
	go func() {
		for i := range machines {
			jobs <- &machines[i]
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	var first error
	fresh := make(map[string][]byte, len(machines))
	for r := range results {
		if r.err != nil {
			if first == nil {
				first = r.err
			}
			continue
		}
		fresh[r.mac] = r.cfg
	}
	c.mu.Lock()
	for mac, cfg := range fresh {
		c.configs[mac] = cfg
	}
	c.mu.Unlock()
	return first
}

// Ignition returns the machine's config, rendering it on a miss.
func (c *IgnitionCache) Ignition(_ context.Context, m *Machine) ([]byte, error) {
	c.mu.RLock()
	cfg, ok := c.configs[m.MAC]
	c.mu.RUnlock()
	if ok {
		return cfg, nil
	}
	cfg, err := c.render(m)
	if err != nil {
		return nil, fmt.Errorf("pxe: ignition for %s: %w", m.Name, err)
	}
	c.mu.Lock()
	c.configs[m.MAC] = cfg
	c.mu.Unlock()
	return cfg, nil
}
