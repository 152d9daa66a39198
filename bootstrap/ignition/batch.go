package ignition

import (
	"errors"
	"runtime"
	"sync"
)

// RenderAll renders the configs of many nodes on every CPU, in the order of nodes. It returns every
// node's error at once (errors.Join), and no configs if any node failed.
func (r *Renderer) RenderAll(nodes []Node) ([][]byte, error) {
	out := make([][]byte, len(nodes))
	errs := make([]error, len(nodes))
	workers := min(runtime.GOMAXPROCS(0), len(nodes))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				out[i], errs[i] = r.Render(nodes[i])
			}
		})
	}
	for i := range nodes {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
