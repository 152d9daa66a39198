package awstest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// The fake checks AWS Signature Version 4 as AWS does, with its own implementation (not the SDK's):
// a request signed with another secret key, or changed after it was signed, is refused.

const unsignedPayload = "UNSIGNED-PAYLOAD"

// sigv4 is what a request says about its signature.
type sigv4 struct {
	credential    string // AKID/DATE/REGION/SERVICE/aws4_request
	signedHeaders []string
	signature     string
	date          string // X-Amz-Date
	payloadHash   string
	presigned     bool
}

// verifySignature recomputes the request's signature; body is the request body (already read).
func verifySignature(r *http.Request, sig sigv4, body []byte) bool {
	payload := sig.payloadHash
	switch {
	case sig.presigned:
		payload = unsignedPayload
	case payload == "":
		sum := sha256.Sum256(body)
		payload = hex.EncodeToString(sum[:])
	case payload != unsignedPayload:
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != payload {
			return false
		}
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon.WriteString(path + "\n")
	canon.WriteString(canonicalQuery(r.URL.Query(), sig.presigned) + "\n")
	for _, h := range sig.signedHeaders {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = r.Header.Get("Content-Length")
			if v == "" && r.ContentLength >= 0 {
				v = itoa(r.ContentLength)
			}
		default:
			vs := r.Header.Values(h)
			for i := range vs {
				vs[i] = strings.Join(strings.Fields(vs[i]), " ")
			}
			v = strings.Join(vs, ",")
		}
		canon.WriteString(h + ":" + v + "\n")
	}
	canon.WriteString("\n" + strings.Join(sig.signedHeaders, ";") + "\n" + payload)

	parts := strings.Split(sig.credential, "/")
	scope := strings.Join(parts[1:], "/")
	sum := sha256.Sum256([]byte(canon.String()))
	toSign := "AWS4-HMAC-SHA256\n" + sig.date + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := []byte("AWS4" + SecretAccessKey)
	for _, p := range parts[1:] {
		key = hmacSHA256(key, p)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	return hmac.Equal([]byte(want), []byte(sig.signature))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// canonicalQuery sorts and RFC 3986-encodes the query, without the signature of a presigned URL.
func canonicalQuery(q url.Values, presigned bool) string {
	var pairs []string
	for k, vs := range q {
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, escape(k)+"="+escape(v))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}

// readBody reads the request body and puts it back for the handler.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}
