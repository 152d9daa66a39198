package pxe

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits of the TFTP server's per-client request rate. A booting machine asks for one or two files
// (a BIOS PXE ROM often asks twice: once for the size, then for the file) and retries a few times at
// most; a client that asks more is broken or hostile, and gets an error packet instead.
const (
	// TFTPRequestBurst is how many read requests a client may make at once.
	TFTPRequestBurst = 10
	// TFTPRequestEvery is how often a client earns one more request once its burst is spent.
	TFTPRequestEvery = time.Second
	// tftpMaxClients caps the clients whose rates are tracked; idle ones are forgotten first.
	tftpMaxClients = 4096
)

// clientLimiter limits the rate of requests by client address, with a bounded table of clients.
type clientLimiter struct {
	every rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Addr]*rate.Limiter
}

func newClientLimiter(every time.Duration, burst, max int) *clientLimiter {
	return &clientLimiter{every: rate.Every(every), burst: burst, max: max, m: map[netip.Addr]*rate.Limiter{}}
}

// allow reports whether client may make a request at now. When the table is full of clients that
// are all active, a new client is refused rather than let the table grow.
func (c *clientLimiter) allow(client netip.Addr, now time.Time) bool {
	client = client.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.m[client]
	if !ok {
		if len(c.m) >= c.max {
			c.forgetIdle(now)
		}
		if len(c.m) >= c.max {
			return false
		}
		l = rate.NewLimiter(c.every, c.burst)
		c.m[client] = l
	}
	return l.AllowN(now, 1)
}

// forgetIdle drops the clients whose burst is whole again: they would start afresh anyway.
func (c *clientLimiter) forgetIdle(now time.Time) {
	for a, l := range c.m {
		if l.TokensAt(now) >= float64(c.burst) {
			delete(c.m, a)
		}
	}
}
