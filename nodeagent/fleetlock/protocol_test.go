package fleetlock_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/nodeagent/fleetlock"
	"github.com/kiln-dev/kiln/nodeagent/rebootlock"
)

// zincatiBody is the body Zincati sends (serde_json's pretty printing of its client parameters).
func zincatiBody(id, group string) string {
	return fmt.Sprintf("{\n  \"client_params\": {\n    \"id\": %q,\n    \"group\": %q\n  }\n}", id, group)
}

// zincati is a request as Zincati makes it: a POST of its body to base + path with the protocol's
// header and reqwest's default Accept, and no Content-Type.
func zincati(t *testing.T, base, path, id, group string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, strings.NewReader(zincatiBody(id, group)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("fleet-lock-protocol", "true")
	req.Header.Set("Accept", "*/*")
	return req
}

// reply is what came back: the status, and the error's kind and value.
type reply struct {
	status      int
	kind, value string
}

// check says what is wrong with resp against the status and kind wanted.
func check(t *testing.T, resp *http.Response, status int, kind string) reply {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := reply{status: resp.StatusCode}
	if status == http.StatusOK {
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200: %s", resp.StatusCode, body)
		}
		return got
	}
	var e struct{ Kind, Value string }
	if err := json.Unmarshal(body, &e); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("body %q (%s): want a JSON error: %v", body, resp.Header.Get("Content-Type"), err)
	}
	got.kind, got.value = e.Kind, e.Value
	if resp.StatusCode != status || e.Kind != kind || e.Value == "" {
		t.Errorf("status %d, kind %q, value %q; want %d and %q with a value", resp.StatusCode, e.Kind, e.Value, status, kind)
	}
	return got
}

// TestProtocol checks the replies to requests that never reach the lock, and what a failing lock
// gives, on a handler whose semaphore has no API client.
func TestProtocol(t *testing.T) {
	var log bytes.Buffer
	h := fleetlock.New(map[string]*rebootlock.Semaphore{"workers": {Pool: "workers", Slots: 1}}, slog.New(slog.NewJSONHandler(&log, nil)))
	const id = "e0f3745b108f471cbd4883c6fbed8cdd"
	good := zincatiBody(id, "workers")
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string // besides Zincati's
		status                   int
		kind                     string
	}{
		{name: "a GET", method: http.MethodGet, path: fleetlock.PreRebootPath, status: http.StatusMethodNotAllowed, kind: fleetlock.KindMethodNotAllowed},
		{name: "a PUT", method: http.MethodPut, path: fleetlock.SteadyStatePath, body: good, status: http.StatusMethodNotAllowed, kind: fleetlock.KindMethodNotAllowed},
		{name: "another path", path: "/v1/reboot", body: good, status: http.StatusNotFound, kind: fleetlock.KindNotFound},
		{name: "below a base path", path: "/base" + fleetlock.PreRebootPath, body: good, status: http.StatusNotFound, kind: fleetlock.KindNotFound},
		{name: "no header", path: fleetlock.PreRebootPath, body: good, header: map[string]string{"fleet-lock-protocol": ""}, status: http.StatusBadRequest, kind: fleetlock.KindMissingHeader},
		{name: "header false", path: fleetlock.PreRebootPath, body: good, header: map[string]string{"fleet-lock-protocol": "false"}, status: http.StatusBadRequest, kind: fleetlock.KindMissingHeader},
		{name: "header TRUE", path: fleetlock.SteadyStatePath, body: good, header: map[string]string{"fleet-lock-protocol": "TRUE"}, status: http.StatusBadRequest, kind: fleetlock.KindMissingHeader},
		{name: "no body", path: fleetlock.PreRebootPath, status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "not JSON", path: fleetlock.PreRebootPath, body: "client_params=1", status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "JSON and more", path: fleetlock.PreRebootPath, body: good + "{}", status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "no client_params", path: fleetlock.PreRebootPath, body: `{"id": "a", "group": "workers"}`, status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "client_params a string", path: fleetlock.PreRebootPath, body: `{"client_params": "a"}`, status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "no id", path: fleetlock.PreRebootPath, body: `{"client_params": {"group": "workers"}}`, status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "an id with a space", path: fleetlock.PreRebootPath, body: zincatiBody("a b", "workers"), status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "an id of 254 bytes", path: fleetlock.PreRebootPath, body: zincatiBody(strings.Repeat("a", 254), "workers"), status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "no group", path: fleetlock.SteadyStatePath, body: `{"client_params": {"id": "a"}}`, status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "a group out of the protocol's form", path: fleetlock.PreRebootPath, body: zincatiBody(id, "work_ers"), status: http.StatusBadRequest, kind: fleetlock.KindInvalidIdentity},
		{name: "a body too large", path: fleetlock.PreRebootPath, body: `{"client_params": {"id": "a", "group": "workers", "pad": "` + strings.Repeat("x", fleetlock.MaxBodyBytes) + `"}}`, status: http.StatusRequestEntityTooLarge, kind: fleetlock.KindTooLarge},
		{name: "an unknown group", path: fleetlock.PreRebootPath, body: zincatiBody(id, "default"), status: http.StatusBadRequest, kind: fleetlock.KindUnknownGroup},
		{name: "an unknown group, steady state", path: fleetlock.SteadyStatePath, body: zincatiBody(id, "Workers"), status: http.StatusBadRequest, kind: fleetlock.KindUnknownGroup},
		// Good requests: the semaphore has no API client, so the lock fails.
		{name: "a lock that fails", path: fleetlock.PreRebootPath, body: good, status: http.StatusInternalServerError, kind: fleetlock.KindLockFailed},
		{name: "an unlock that fails", path: fleetlock.SteadyStatePath, body: good, status: http.StatusInternalServerError, kind: fleetlock.KindUnlockFailed},
		{name: "unknown fields are for later versions", path: fleetlock.PreRebootPath, body: `{"client_params": {"id": "a", "group": "workers", "os": "fcos"}, "v": 2}`, status: http.StatusInternalServerError, kind: fleetlock.KindLockFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := zincati(t, "http://fleetlock.test", tc.path, "", "")
			req.Body = io.NopCloser(strings.NewReader(tc.body))
			if tc.method != "" {
				req.Method = tc.method
			}
			for k, v := range tc.header {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			rec := httptest.NewRecorder()
			log.Reset()
			h.ServeHTTP(rec, req)
			resp := rec.Result()
			check(t, resp, tc.status, tc.kind)
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q, want POST", resp.Header.Get("Allow"))
			}
			// One JSON line says what was decided.
			var line struct {
				Level, Msg, Path, Kind, Why string
				Status                      int
			}
			if strings.Count(log.String(), "\n") != 1 || json.Unmarshal(log.Bytes(), &line) != nil {
				t.Fatalf("log %q: want one JSON line", log.String())
			}
			if line.Msg != "fleetlock" || line.Path != tc.path || line.Status != tc.status || line.Kind != tc.kind || line.Why == "" {
				t.Errorf("log %q, want the path, the status, the kind and why", log.String())
			}
			if strings.Contains(log.String(), "xxxx") {
				t.Errorf("log %q holds the request's body", log.String())
			}
		})
	}
}
