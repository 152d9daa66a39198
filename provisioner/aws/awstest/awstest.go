// Package awstest is a fake of the AWS APIs that kiln's AWS provider calls, served over HTTPS on
// loopback so that the real aws-sdk-go-v2 clients talk to it through their endpoint setting, as they
// would to AWS: EC2 and Elastic Load Balancing v2 in the Query protocol (form-encoded requests, XML
// answers in AWS's documented shapes, AWS's error XML), and the S3 REST calls on objects (PUT, GET,
// HEAD, DELETE, presigned GET).
//
// It keeps real state: VPCs, subnets, route tables, internet and NAT gateways, Elastic IPs, security
// groups and their rules, instances (with EC2's ClientToken idempotency), load balancers, target
// groups, listeners, targets, S3 objects, tags and tag filters, pagination. It checks what AWS
// checks where kiln could get it wrong (a subnet outside its VPC, a dependency still in use on delete,
// a duplicate rule, user-data over 16 KiB, the same client token with other parameters). Only the
// actions kiln calls are implemented; any other answers InvalidAction.
//
// Faults make it behave as AWS does on a bad day: a share of 503s and throttling errors, new
// instances missing from DescribeInstances for a few calls (eventual consistency), and hooks right
// after RunInstances made its instances or after any action, to stand for a controller that crashes
// before it hears back.
package awstest

import (
	"bytes"
	"context"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Credentials the fake accepts; any other access key is refused.
const (
	AccessKeyID     = "AKIAKILNTESTFAKE0001"
	SecretAccessKey = "kiln-awstest-secret-key-not-a-real-one"
	Region          = "us-east-1"
	// AccountID owns every resource.
	AccountID = "123456789012"
)

// Faults are the failures the fake injects. The zero value injects none.
type Faults struct {
	// ErrorRate is the share (0 to 1) of requests that fail before they are handled, half with a
	// 503 (EC2 Unavailable, ELB ServiceUnavailable, S3 ServiceUnavailable) and half throttled (EC2
	// RequestLimitExceeded, ELB Throttling, S3 SlowDown). A failed request changes nothing.
	ErrorRate float64
	// HideNewInstances is how many DescribeInstances calls a new instance is missing from.
	HideNewInstances int
	// AfterRunInstances, when set, is called with the new instances' IDs once RunInstances has made
	// them and before it answers; if it returns an error the connection is closed without an answer.
	AfterRunInstances func(ids []string) error
	// AfterAction, when set, is called with the name of every EC2 and Elastic Load Balancing action
	// the fake has carried out (CreateNetworkInterface, TerminateInstances, ...) before it answers;
	// if it returns an error the connection is closed without an answer: a controller that crashes
	// at that point.
	AfterAction func(action string) error
}

// Request is one request the fake received, in the order of arrival.
type Request struct {
	Time    time.Time
	Service string // ec2, elasticloadbalancing, s3
	Action  string // the Query action, or the S3 method
	// Code is the error code answered, empty on success.
	Code string
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the endpoint every client uses (https://127.0.0.1:PORT).
	URL string
	srv *httptest.Server

	mu       sync.Mutex
	rnd      *rand.Rand
	faults   Faults
	requests []Request
	next     int
	now      func() time.Time
	ec2      ec2State
	elb      elbState
	s3       map[string]map[string]*Object
}

// Start starts a fake on loopback, closed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := New()
	t.Cleanup(s.Close)
	return s
}

// New starts a fake; Close stops it.
func New() *Server {
	s := &Server{
		rnd: rand.New(rand.NewPCG(1, 2)),
		now: time.Now,
		s3:  map[string]map[string]*Object{},
	}
	s.ec2.init()
	s.elb.init()
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	return s
}

// Client is an HTTP client that trusts the fake's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Config is an aws.Config for clients of the fake: its endpoint, region, static credentials and an
// HTTP client that trusts its certificate.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		HTTPClient:   s.srv.Client(),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, Source: "awstest"}, nil
		}),
	}
}

// HTTPClient is a client that trusts the fake's certificate, for fetching presigned URLs.
func (s *Server) HTTPClient() *http.Client { return s.srv.Client() }

// SetFaults replaces the faults injected from now on.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// SetClock replaces the fake's clock, which decides when presigned URLs expire and stamps new
// resources.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Requests returns every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Calls counts the requests for an action (failed ones included).
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Action == action {
			n++
		}
	}
	return n
}

// id returns a new resource ID with the prefix, in AWS's 17-hex-digit form.
func (s *Server) id(prefix string) string {
	s.next++
	return fmt.Sprintf("%s-%017x", prefix, 0xabc0000+s.next)
}

// apiError is an error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func badRequest(code, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, code, format, args...)
}

// dropConnection is returned by a handler whose answer the client must never see.
type dropConnection struct{}

func (dropConnection) Error() string { return "connection dropped" }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	service, err := s.authenticate(r)
	if err != nil {
		s.log(Request{Time: time.Now(), Service: service, Action: r.Method, Code: err.code})
		writeError(w, service, err)
		return
	}
	switch service {
	case "ec2", "elasticloadbalancing":
		s.serveQuery(w, r, service)
	case "s3":
		s.serveS3(w, r)
	default:
		writeError(w, "ec2", badRequest("InvalidAction", "no service %q here", service))
	}
}

func (s *Server) log(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

// authenticate checks the request's Signature Version 4 (an Authorization header, or a presigned
// query) against the fake's credentials, and that a presigned URL has not expired, and returns the
// signing service.
func (s *Server) authenticate(r *http.Request) (string, *apiError) {
	deny := func(service, format string, args ...any) (string, *apiError) {
		code := "AuthFailure"
		switch service {
		case "s3":
			code = "AccessDenied"
		case "elasticloadbalancing":
			code = "InvalidClientTokenId"
		}
		return service, errorf(http.StatusForbidden, code, format, args...)
	}
	var sig sigv4
	q := r.URL.Query()
	if h := r.Header.Get("Authorization"); h != "" {
		rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
		if !ok {
			return deny("", "unsupported authorization scheme")
		}
		for part := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "Credential":
				sig.credential = v
			case "SignedHeaders":
				sig.signedHeaders = strings.Split(v, ";")
			case "Signature":
				sig.signature = v
			}
		}
		sig.date = r.Header.Get("X-Amz-Date")
		sig.payloadHash = r.Header.Get("X-Amz-Content-Sha256")
	} else if q.Get("X-Amz-Signature") != "" {
		sig = sigv4{credential: q.Get("X-Amz-Credential"), signedHeaders: strings.Split(q.Get("X-Amz-SignedHeaders"), ";"),
			signature: q.Get("X-Amz-Signature"), date: q.Get("X-Amz-Date"), presigned: true}
	} else {
		return deny("", "request is not signed")
	}
	// AKID/DATE/REGION/SERVICE/aws4_request
	parts := strings.Split(sig.credential, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || sig.signature == "" || sig.date == "" {
		return deny("", "malformed signature")
	}
	service := parts[3]
	if parts[0] != AccessKeyID {
		return deny(service, "AWS was not able to validate the provided access credentials")
	}
	if parts[2] != Region {
		return deny(service, "credential should be scoped to a valid region, not %q", parts[2])
	}
	signed, err := time.Parse("20060102T150405Z", sig.date)
	if err != nil || !strings.HasPrefix(sig.date, parts[1]) {
		return deny(service, "malformed X-Amz-Date %q", sig.date)
	}
	s.mu.Lock()
	now := s.now()
	s.mu.Unlock()
	if sig.presigned {
		expires, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || expires < 1 || expires > 7*24*3600 {
			return deny(service, "X-Amz-Expires must be from 1 to 604800 seconds")
		}
		if now.After(signed.Add(time.Duration(expires) * time.Second)) {
			return deny(service, "Request has expired")
		}
	} else if d := now.Sub(signed); d > 15*time.Minute || d < -15*time.Minute {
		return service, errorf(http.StatusForbidden, "RequestExpired", "Request has expired (signed at %s)", sig.date)
	}
	body, err := readBody(r)
	if err != nil {
		return deny(service, "reading the body: %v", err)
	}
	if !verifySignature(r, sig, body) {
		if service == "s3" {
			return service, errorf(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		}
		return deny(service, "The request signature we calculated does not match the signature you provided.")
	}
	return service, nil
}

// injectFault decides whether this request fails before it is handled.
func (s *Server) injectFault(service string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.ErrorRate <= 0 || s.rnd.Float64() >= s.faults.ErrorRate {
		return nil
	}
	throttle := s.rnd.IntN(2) == 0
	switch {
	case service == "ec2" && throttle:
		return errorf(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
	case service == "ec2":
		return errorf(http.StatusServiceUnavailable, "Unavailable", "The service is unavailable. Please try again shortly.")
	case service == "s3" && throttle:
		return errorf(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	case throttle:
		return badRequest("Throttling", "Rate exceeded")
	default:
		return errorf(http.StatusServiceUnavailable, "ServiceUnavailable", "Service is unavailable")
	}
}

func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request, service string) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		writeError(w, service, badRequest("MalformedQueryString", "want a form-encoded POST"))
		return
	}
	p := params(r.PostForm)
	action := p.get("Action")
	rec := Request{Time: time.Now(), Service: service, Action: action}
	defer func() { s.log(rec) }()

	wantVersion := map[string]string{"ec2": "2016-11-15", "elasticloadbalancing": "2015-12-01"}[service]
	if v := p.get("Version"); v != wantVersion {
		e := badRequest("InvalidParameterValue", "Version %q is not %s", v, wantVersion)
		rec.Code = e.code
		writeError(w, service, e)
		return
	}
	if e := s.injectFault(service); e != nil {
		rec.Code = e.code
		writeError(w, service, e)
		return
	}
	var (
		out any
		err error
	)
	if service == "ec2" {
		out, err = s.ec2Action(action, p)
	} else {
		out, err = s.elbAction(action, p)
	}
	if err == nil {
		s.mu.Lock()
		hook := s.faults.AfterAction
		s.mu.Unlock()
		if hook != nil && hook(action) != nil {
			err = dropConnection{}
		}
	}
	if _, ok := err.(dropConnection); ok {
		rec.Code = "ConnectionDropped"
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, herr := hj.Hijack(); herr == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		e, ok := err.(*apiError)
		if !ok {
			e = errorf(http.StatusInternalServerError, "InternalError", "%v", err)
		}
		rec.Code = e.code
		writeError(w, service, e)
		return
	}
	if service == "ec2" {
		if m, ok := out.(interface{ setRequestID(string) }); ok {
			m.setRequestID(requestID())
		}
		writeXML(w, http.StatusOK, xml.StartElement{
			Name: xml.Name{Local: action + "Response"},
			Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: "http://ec2.amazonaws.com/doc/2016-11-15/"}},
		}, out)
		return
	}
	writeXML(w, http.StatusOK, xml.StartElement{Name: xml.Name{Local: action + "Response"},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"}},
	}, elbEnvelope{result: action + "Result", body: out})
}

// action answers one Query action, with the server's lock held.
type action func(s *Server, p params) (any, error)

// actions map the names of Query actions to their handlers.
type actions map[string]action

// merge joins tables of actions; an action in two of them is a mistake.
func merge(tables ...actions) actions {
	out := actions{}
	for _, t := range tables {
		for name, h := range t {
			if _, dup := out[name]; dup {
				panic("awstest: action " + name + " is handled twice")
			}
			out[name] = h
		}
	}
	return out
}

// ec2Meta is embedded in every EC2 answer.
type ec2Meta struct {
	RequestID string `xml:"requestId"`
}

func (m *ec2Meta) setRequestID(id string) { m.RequestID = id }

// elbEnvelope is an ELB answer: <XResult>body</XResult><ResponseMetadata>.
type elbEnvelope struct {
	result string
	body   any
}

func (e elbEnvelope) MarshalXML(enc *xml.Encoder, start xml.StartElement) error {
	if err := enc.EncodeToken(start); err != nil {
		return err
	}
	rs := xml.StartElement{Name: xml.Name{Local: e.result}}
	if e.body == nil {
		if err := enc.EncodeToken(rs); err != nil {
			return err
		}
		if err := enc.EncodeToken(rs.End()); err != nil {
			return err
		}
	} else if err := enc.EncodeElement(e.body, rs); err != nil {
		return err
	}
	meta := struct {
		RequestID string `xml:"RequestId"`
	}{requestID()}
	if err := enc.EncodeElement(meta, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}}); err != nil {
		return err
	}
	return enc.EncodeToken(start.End())
}

func requestID() string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", rand.Uint32(), rand.Uint64()&0xffffffffffff)
}

func writeXML(w http.ResponseWriter, status int, start xml.StartElement, v any) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	if err := xml.NewEncoder(&buf).EncodeElement(v, start); err != nil {
		panic(fmt.Sprintf("awstest: encode %s: %v", start.Name.Local, err))
	}
	w.Header().Set("x-amzn-RequestId", requestID())
	writeBody(w, status, buf.Bytes())
}

// writeBody answers with an XML body and its length, as AWS does.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError answers with the error XML of the service.
func writeError(w http.ResponseWriter, service string, e *apiError) {
	id := requestID()
	w.Header().Set("x-amzn-RequestId", id)
	var body any
	switch service {
	case "elasticloadbalancing":
		t := "Sender"
		if e.status >= 500 {
			t = "Receiver"
		}
		body = struct {
			XMLName xml.Name `xml:"ErrorResponse"`
			Xmlns   string   `xml:"xmlns,attr"`
			Type    string   `xml:"Error>Type"`
			Code    string   `xml:"Error>Code"`
			Message string   `xml:"Error>Message"`
			ID      string   `xml:"RequestId"`
		}{Xmlns: "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/", Type: t, Code: e.code, Message: e.message, ID: id}
	case "s3":
		w.Header().Set("x-amz-request-id", id)
		body = struct {
			XMLName xml.Name `xml:"Error"`
			Code    string   `xml:"Code"`
			Message string   `xml:"Message"`
			ID      string   `xml:"RequestId"`
		}{Code: e.code, Message: e.message, ID: id}
	default:
		body = struct {
			XMLName xml.Name `xml:"Response"`
			Code    string   `xml:"Errors>Error>Code"`
			Message string   `xml:"Errors>Error>Message"`
			ID      string   `xml:"RequestID"`
		}{Code: e.code, Message: e.message, ID: id}
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	if err := xml.NewEncoder(&buf).Encode(body); err != nil {
		panic(fmt.Sprintf("awstest: encode error %s: %v", e.code, err))
	}
	writeBody(w, e.status, buf.Bytes())
}

// params are a Query request's form values, addressed by their dotted names.
type params url.Values

func (p params) get(key string) string { return url.Values(p).Get(key) }

func (p params) has(key string) bool {
	_, ok := p[key]
	return ok
}

// sub returns the values under prefix ("Filter.1"), with the prefix and its dot removed.
func (p params) sub(prefix string) params {
	out := params{}
	for k, v := range p {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// indexes returns the list indexes under prefix, in order: "Tag.1", "Tag.2" or "Tags.member.1".
func (p params) indexes(prefix string) (string, []int) {
	base := prefix + "."
	if p.hasPrefix(prefix + ".member.") {
		base = prefix + ".member."
	}
	seen := map[int]bool{}
	for k := range p {
		rest, ok := strings.CutPrefix(k, base)
		if !ok {
			continue
		}
		head, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(head); err == nil {
			seen[n] = true
		}
	}
	var idx []int
	for n := range seen {
		idx = append(idx, n)
	}
	sort.Ints(idx)
	return base, idx
}

func (p params) hasPrefix(prefix string) bool {
	for k := range p {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// list returns the scalar list under prefix.
func (p params) list(prefix string) []string {
	base, idx := p.indexes(prefix)
	var out []string
	for _, n := range idx {
		out = append(out, p.get(base+strconv.Itoa(n)))
	}
	return out
}

// items returns the structures of the list under prefix.
func (p params) items(prefix string) []params {
	base, idx := p.indexes(prefix)
	var out []params
	for _, n := range idx {
		out = append(out, p.sub(base+strconv.Itoa(n)))
	}
	return out
}

func (p params) int(key string, def int) (int, error) {
	v := p.get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, badRequest("InvalidParameterValue", "%s: %q is not a number", key, v)
	}
	return n, nil
}

// filter is one Filter.N of a Describe call.
type filter struct {
	name   string
	values []string
}

func filtersFrom(p params) []filter {
	var fs []filter
	for _, f := range p.items("Filter") {
		fs = append(fs, filter{name: f.get("Name"), values: f.list("Value")})
	}
	return fs
}

// match reports whether a resource with these tags and attributes passes every filter. Unknown
// filter names are an error, as in EC2.
func match(fs []filter, t tags, attrs map[string][]string) (bool, error) {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			if v, ok := t[strings.TrimPrefix(f.name, "tag:")]; ok {
				have = []string{v}
			}
		case f.name == "tag-key":
			for k := range t {
				have = append(have, k)
			}
		default:
			v, ok := attrs[f.name]
			if !ok {
				return false, badRequest("InvalidParameterValue", "The filter '%s' is invalid", f.name)
			}
			have = v
		}
		found := false
		for _, h := range have {
			for _, w := range f.values {
				if h == w || w == "*" {
					found = true
				}
			}
		}
		if !found {
			return false, nil
		}
	}
	return true, nil
}

// page cuts one page out of n items by MaxResults and NextToken.
func page(p params, n int) (from, to int, next string, err error) {
	size, err := p.int("MaxResults", 0)
	if err != nil {
		return 0, 0, "", err
	}
	if tok := p.get("NextToken"); tok != "" {
		from, err = strconv.Atoi(strings.TrimPrefix(tok, "page-"))
		if err != nil || from < 0 || from > n {
			return 0, 0, "", badRequest("InvalidParameterValue", "invalid NextToken %q", tok)
		}
	}
	to = n
	if size > 0 {
		if size < 5 || size > 1000 {
			return 0, 0, "", badRequest("InvalidParameterValue", "MaxResults must be from 5 to 1000, not %d", size)
		}
		if from+size < n {
			to = from + size
			next = "page-" + strconv.Itoa(to)
		}
	}
	return from, to, next, nil
}

// CertificatePEM is the fake's TLS certificate, for clients configured by a CA bundle file
// (AWS_CA_BUNDLE).
func (s *Server) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}
