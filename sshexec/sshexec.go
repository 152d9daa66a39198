package sshexec

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DefaultTimeout is the time a whole exchange may take when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Config says whom to log in as, how, and which host keys to trust.
type Config struct {
	// User to log in as.
	User string
	// Signer is the private key to log in with; key authentication is the only kind.
	Signer ssh.Signer
	// KnownHosts is the known_hosts file that must hold the host's key. Required unless
	// InsecureHostKey is set.
	KnownHosts string
	// InsecureHostKey, when set, makes the client accept any host key without consulting
	// KnownHosts, and is called with each key it accepts so that the caller can say so. Set it only
	// on the user's explicit request.
	InsecureHostKey func(addr string, key ssh.PublicKey)
	// Timeout bounds the whole exchange, from the dial to the last command's end; the connection
	// is cut when it passes, whatever the host does. Defaults to DefaultTimeout.
	Timeout time.Duration
	// MaxOutput bounds what one command may print, stdout and stderr each: a host that prints more
	// is cut off with ErrOutputTooLarge rather than fill memory within the timeout. Defaults to
	// DefaultMaxOutput.
	MaxOutput int
}

// DefaultMaxOutput is the output a command may print, each stream, when Config.MaxOutput is zero:
// the largest an audit reads (sshd -T, apt-config dump, nft list ruleset) is some hundred KiB.
const DefaultMaxOutput = 16 << 20

// Client is a logged-in SSH connection to one host. Close it when done.
type Client struct {
	addr, user string
	deadline   time.Time
	timeout    time.Duration
	maxOutput  int
	conn       net.Conn
	client     *ssh.Client
}

// Result is what a command did on the host.
type Result struct {
	Stdout, Stderr []byte
	// ExitStatus is the command's exit status; -1 when a signal ended it.
	ExitStatus int
}

// Dial connects to addr (host:port), checks its host key and logs in. ctx ends the dial and the
// handshake early; Config.Timeout bounds them and every later command together.
func Dial(ctx context.Context, addr string, cfg Config) (*Client, error) {
	c := &Client{addr: addr, user: cfg.User, timeout: cfg.Timeout, maxOutput: cfg.MaxOutput}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxOutput <= 0 {
		c.maxOutput = DefaultMaxOutput
	}
	if cfg.Signer == nil {
		return nil, c.errorf("no private key to log in with")
	}
	var hostKeys ssh.HostKeyCallback
	if cfg.InsecureHostKey != nil {
		hostKeys = func(_ string, _ net.Addr, key ssh.PublicKey) error {
			cfg.InsecureHostKey(addr, key)
			return nil
		}
	} else {
		if cfg.KnownHosts == "" {
			return nil, c.errorf("%w: none given", ErrKnownHostsFile)
		}
		cb, err := knownhosts.New(cfg.KnownHosts)
		if err != nil {
			return nil, c.errorf("%w %s: %w", ErrKnownHostsFile, cfg.KnownHosts, err)
		}
		hostKeys = checkHostKey(cb, addr, cfg.KnownHosts)
	}

	c.deadline = time.Now().Add(c.timeout)
	d := net.Dialer{Deadline: c.deadline}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	// The deadline holds for the connection's life: a host that stalls at any point is cut off.
	if err := conn.SetDeadline(c.deadline); err != nil {
		conn.Close()
		return nil, c.errorf("%w", err)
	}
	sc := &ssh.ClientConfig{
		User:            cfg.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: hostKeys,
	}
	var known []knownhosts.KnownKey
	if cfg.InsecureHostKey == nil {
		// Ask the host for a key of a type the file holds for it: one that offers an ed25519 and an
		// RSA key, with only the ed25519 one known, is not a mismatch.
		known = knownKeys(hostKeys, addr, conn.RemoteAddr())
		sc.HostKeyAlgorithms = algorithms(known)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, sc)
	if !stop() {
		if err == nil {
			cc.Close()
		}
		return nil, c.wrap(ctx, context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		var ane *ssh.AlgorithmNegotiationError
		switch {
		case errors.As(err, &hke):
			return nil, c.errorf("%w", hke)
		case errors.As(err, &ane) && ane.What == "host key" && len(known) > 0:
			return nil, c.errorf("%w", &HostKeyError{Addr: addr, KnownHosts: cfg.KnownHosts, Known: known})
		}
		return nil, c.wrap(ctx, err)
	}
	c.conn, c.client = conn, ssh.NewClient(cc, chans, reqs)
	return c, nil
}

// Run runs command on the host and returns its output and exit status. A command that does not
// exit 0 returns its Result and an error wrapping an *ExitError. ctx ends the command early, and
// the connection with it.
func (c *Client) Run(ctx context.Context, command string) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, c.errorf("%s: %w", command, context.Cause(ctx))
	}
	s, err := c.client.NewSession()
	if err != nil {
		return Result{}, c.wrap(ctx, err)
	}
	defer s.Close()
	out, errOut := &cappedBuffer{max: c.maxOutput}, &cappedBuffer{max: c.maxOutput}
	s.Stdout, s.Stderr = out, errOut
	stop := context.AfterFunc(ctx, func() { c.client.Close() })
	err = s.Run(command)
	cancelled := !stop()
	res := Result{Stdout: out.Bytes(), Stderr: errOut.Bytes()}
	var ee *ssh.ExitError
	switch {
	case out.over || errOut.over:
		c.client.Close() // the host may still be sending: the connection goes
		return res, c.errorf("%s: %w of %d bytes", command, ErrOutputTooLarge, c.maxOutput)
	case err == nil:
		return res, nil
	case cancelled:
		return res, c.errorf("%s: %w", command, context.Cause(ctx))
	case errors.As(err, &ee):
		xe := &ExitError{Command: command, Status: ee.ExitStatus(), Stderr: res.Stderr}
		if ee.Signal() != "" {
			xe.Status, xe.Signal = -1, ee.Signal()
		}
		res.ExitStatus = xe.Status
		return res, c.errorf("%w", xe)
	}
	return res, c.wrap(ctx, fmt.Errorf("%s: %w", command, err))
}

// Stdio connects a command that Attach runs to the caller's streams.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	// TTY, when set, asks the host for a pseudo-terminal (an interactive shell); Err is then unused,
	// as a terminal has one output.
	TTY *TTY
}

// TTY is the pseudo-terminal of an interactive session.
type TTY struct {
	// Term is the terminal type ($TERM).
	Term          string
	Width, Height int
}

// Attach runs command, or the user's login shell when command is empty, with its streams connected
// to s: it is for a person, who ends it. Config.Timeout and Config.MaxOutput stop applying once it
// starts; ctx still ends it, and the connection with it. A command that does not exit 0 returns an
// error wrapping an *ExitError (its Stderr is empty: it went to s.Err).
func (c *Client) Attach(ctx context.Context, command string, s Stdio) error {
	if err := ctx.Err(); err != nil {
		return c.errorf("%w", context.Cause(ctx))
	}
	if err := c.conn.SetDeadline(time.Time{}); err != nil {
		return c.errorf("%w", err)
	}
	c.deadline = time.Time{}
	sess, err := c.client.NewSession()
	if err != nil {
		return c.wrap(ctx, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = s.In, s.Out, s.Err
	if s.TTY != nil {
		modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
		if err := sess.RequestPty(s.TTY.Term, s.TTY.Height, s.TTY.Width, modes); err != nil {
			return c.errorf("pseudo-terminal: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.client.Close() })
	if command == "" {
		if err = sess.Shell(); err == nil {
			err = sess.Wait()
		}
	} else {
		err = sess.Run(command)
	}
	cancelled := !stop()
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return nil
	case cancelled:
		return c.errorf("%s: %w", orShell(command), context.Cause(ctx))
	case errors.As(err, &ee):
		xe := &ExitError{Command: orShell(command), Status: ee.ExitStatus()}
		if ee.Signal() != "" {
			xe.Status, xe.Signal = -1, ee.Signal()
		}
		return c.errorf("%w", xe)
	}
	return c.wrap(ctx, fmt.Errorf("%s: %w", orShell(command), err))
}

func orShell(command string) string {
	if command == "" {
		return "login shell"
	}
	return command
}

// Close ends the connection.
func (c *Client) Close() error { return c.client.Close() }

// errorf is an error about this host, with the user and address as its subject.
func (c *Client) errorf(format string, args ...any) error {
	return fmt.Errorf("ssh %s@%s: "+format, append([]any{c.user, c.addr}, args...)...)
}

// wrap says that err came from the exchange's timeout when it did.
func (c *Client) wrap(ctx context.Context, err error) error {
	if (!c.deadline.IsZero() && !time.Now().Before(c.deadline)) || errors.Is(err, os.ErrDeadlineExceeded) {
		return c.errorf("%w: no end of the exchange within %v: %w", ErrTimeout, c.timeout, err)
	}
	if ctx.Err() != nil {
		return c.errorf("%w", context.Cause(ctx))
	}
	return c.errorf("%w", err)
}

// checkHostKey is knownhosts' callback with its errors made into HostKeyErrors that name the file.
func checkHostKey(cb ssh.HostKeyCallback, addr, file string) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke):
			return &HostKeyError{Addr: addr, KnownHosts: file, Key: key, Known: ke.Want}
		case errors.As(err, &re):
			return &HostKeyError{Addr: addr, KnownHosts: file, Key: key, Revoked: &re.Revoked}
		}
		return err
	}
}

// probeKey is a key no known_hosts file holds: asking about it yields the keys a file holds for a
// host.
var probeKey = func() ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	if err != nil {
		panic(err)
	}
	return k
}()

// knownKeys returns the keys the known_hosts callback holds for the host at addr (remote).
func knownKeys(cb ssh.HostKeyCallback, addr string, remote net.Addr) []knownhosts.KnownKey {
	var hke *HostKeyError
	if err := cb(addr, remote, probeKey); errors.As(err, &hke) {
		return hke.Known
	}
	return nil
}

// algorithms are the host key algorithms of keys; nil (ssh's defaults) when there are none.
func algorithms(keys []knownhosts.KnownKey) []string {
	var algos []string
	seen := map[string]bool{}
	for _, k := range keys {
		types := []string{k.Key.Type()}
		if types[0] == ssh.KeyAlgoRSA {
			types = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
		for _, t := range types {
			if !seen[t] {
				seen[t] = true
				algos = append(algos, t)
			}
		}
	}
	return algos
}

// cappedBuffer is a buffer that refuses to grow beyond max bytes. It has no ReadFrom (it does not
// embed bytes.Buffer), so io.Copy goes through Write and the cap.
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		b.over = true
		return 0, ErrOutputTooLarge
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) Bytes() []byte { return b.buf.Bytes() }
