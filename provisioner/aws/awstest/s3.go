package awstest

import (
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Object is an S3 object as the fake keeps it.
type Object struct {
	Data []byte
	// ServerSideEncryption asked for on PUT (AES256, aws:kms), empty if none.
	ServerSideEncryption string
	ContentType          string
	Modified             time.Time
}

// CreateBucket makes a bucket (kiln does not create buckets; the user names one).
func (s *Server) CreateBucket(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.s3[name] == nil {
		s.s3[name] = map[string]*Object{}
	}
}

// Objects returns the keys of a bucket's objects.
func (s *Server) Objects(bucket string) map[string]Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Object{}
	for k, o := range s.s3[bucket] {
		out[k] = *o
	}
	return out
}

// serveS3 serves path-style object calls: /BUCKET/KEY.
func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	rec := Request{Time: time.Now(), Service: "s3", Action: r.Method}
	defer func() { s.log(rec) }()
	fail := func(status int, code, msg string) {
		rec.Code = code
		writeError(w, "s3", errorf(status, code, "%s", msg))
	}
	if e := s.injectFault("s3"); e != nil {
		fail(e.status, e.code, e.message)
		return
	}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if key == "" {
		fail(http.StatusNotImplemented, "NotImplemented", "the fake serves object calls only")
		return
	}
	presigned := r.URL.Query().Get("X-Amz-Signature") != ""
	if presigned && r.Method != http.MethodGet {
		fail(http.StatusForbidden, "AccessDenied", "presigned URLs here are for GET")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	objects, ok := s.s3[bucket]
	if !ok {
		fail(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
		return
	}
	switch r.Method {
	case http.MethodPut:
		if r.Header.Get("Content-Encoding") == "aws-chunked" {
			fail(http.StatusNotImplemented, "NotImplemented", "the fake takes plain bodies, not aws-chunked")
			return
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			fail(http.StatusBadRequest, "IncompleteBody", err.Error())
			return
		}
		sse := r.Header.Get("X-Amz-Server-Side-Encryption")
		if sse != "" && sse != "AES256" && sse != "aws:kms" {
			fail(http.StatusBadRequest, "InvalidArgument", "invalid server-side encryption "+sse)
			return
		}
		objects[key] = &Object{Data: data, ServerSideEncryption: sse, ContentType: r.Header.Get("Content-Type"), Modified: s.now()}
		sum := md5.Sum(data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		if sse != "" {
			w.Header().Set("X-Amz-Server-Side-Encryption", sse)
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodGet, http.MethodHead:
		o, ok := objects[key]
		if !ok {
			fail(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
			return
		}
		sum := md5.Sum(o.Data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(o.Data)))
		w.Header().Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
		if o.ContentType != "" {
			w.Header().Set("Content-Type", o.ContentType)
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(o.Data)
		}
	case http.MethodDelete:
		delete(objects, key)
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
}
