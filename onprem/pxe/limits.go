package pxe

import (
	"net/http"
	"time"
)

// Limits of the HTTP boot server. Machines that boot fetch a script, an Ignition config and a few
// assets, each with one request; nothing they send is larger than a request line and a few headers.
const (
	// HTTPReadHeaderTimeout is how long a client has to send its request line and headers: a
	// slowloris client that trickles them is cut off after it.
	HTTPReadHeaderTimeout = 10 * time.Second
	// HTTPReadTimeout is how long a client has to send a whole request.
	HTTPReadTimeout = 30 * time.Second
	// HTTPWriteTimeout is how long a response may take to write. It is sized for the largest asset:
	// a live root filesystem of about 1 GiB read at 1 MB/s (a PXE network shared by a rack booting
	// at once) takes about 17 minutes; 30 minutes leaves room. Responses past it are cut off.
	HTTPWriteTimeout = 30 * time.Minute
	// HTTPIdleTimeout is how long a kept-alive connection may wait for its next request.
	HTTPIdleTimeout = 2 * time.Minute
	// MaxHeaderBytes caps the request line and headers; larger requests get 431. (net/http
	// accepts 4 KiB beyond it before it answers so.)
	MaxHeaderBytes = 16 << 10
	// MaxBodyBytes caps a request body: every route is GET or HEAD and reads none.
	MaxBodyBytes = 0
	// MaxHTTPConns caps the connections open at once: a rack or several booting together, each
	// machine with a few connections; further clients wait in the listen backlog.
	MaxHTTPConns = 1024
)

// NewHTTPServer returns an http.Server for h with the limits above, which keep a slow or hostile
// client from holding connections or memory. Run also caps the connections open at once
// (MaxHTTPConns).
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: HTTPReadHeaderTimeout,
		ReadTimeout:       HTTPReadTimeout,
		WriteTimeout:      HTTPWriteTimeout,
		IdleTimeout:       HTTPIdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}
