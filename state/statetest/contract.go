package statetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/state"
)

// Implementation is what the contract checks: every method of state.Store that reads or writes
// values.
type Implementation interface {
	state.Reader
	state.Putter
	state.Creator
	state.Modifier
	state.Deleter
	Buckets() ([]string, error)
}

// item is a value of the kinds the consumers keep: strings, numbers, bytes, lists.
type item struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Data  []byte   `json:"data,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

var errStop = errors.New("stop")

// maxKeySize is bbolt's longest key, which every store keeps to.
const maxKeySize = 32768

// contractCase is one behaviour: the store holds seed, do calls it, and what do returns, the error,
// and what the store holds afterwards are checked.
type contractCase struct {
	name string
	seed Values
	do   func(s Implementation) (any, error)
	// want is compared with what do returns, error or not.
	want any
	// wantErr is matched with errors.Is; wantMsg, when set, is the whole error text.
	wantErr error
	wantMsg string
	// after is everything the store holds afterwards; nil means what was seeded.
	after Values
}

func getItem(bucket, key string) func(s Implementation) (any, error) {
	return func(s Implementation) (any, error) {
		var got item
		err := s.Get(bucket, key, &got)
		return got, err
	}
}

// modified is what a Modify call returns to the table: the value as fn left it, and whether fn ran.
type modified struct {
	V      item
	Called bool
}

func modify(bucket, key string, change func(v *item) error) func(s Implementation) (any, error) {
	return func(s Implementation) (any, error) {
		var r modified
		err := s.Modify(bucket, key, &r.V, func() error {
			r.Called = true
			return change(&r.V)
		})
		return r, err
	}
}

func contractCases() []contractCase {
	one := item{Name: "prod", Count: 1, Data: []byte("hunter2"), Tags: []string{"a", "b"}}
	two := item{Name: "dev", Count: 2}
	cases := []contractCase{
		{name: "get/missing bucket", do: getItem("b", "k"), want: item{},
			wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found"},
		{name: "get/missing key", seed: Values{"b": {"other": one}}, do: getItem("b", "k"), want: item{},
			wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found"},
		{name: "get/value of another type", seed: Values{"b": {"k": "text"}}, do: getItem("b", "k"), want: item{},
			wantMsg: "state: decode b/k: json: cannot unmarshal string into Go value of type statetest.item"},

		{name: "put/new value", do: func(s Implementation) (any, error) {
			if err := s.Put("b", "k", one); err != nil {
				return nil, err
			}
			return getItem("b", "k")(s)
		}, want: one, after: Values{"b": {"k": one}}},
		{name: "put/replaces", seed: Values{"b": {"k": one}}, do: func(s Implementation) (any, error) {
			return nil, s.Put("b", "k", two)
		}, after: Values{"b": {"k": two}}},
		{name: "put/nil", do: func(s Implementation) (any, error) {
			if err := s.Put("b", "k", nil); err != nil {
				return nil, err
			}
			var got *item
			err := s.Get("b", "k", &got)
			return got, err
		}, want: (*item)(nil), after: Values{"b": {"k": nil}}},
		{name: "put/value JSON cannot take", do: func(s Implementation) (any, error) {
			return nil, s.Put("b", "k", func() {})
		}, wantMsg: "state: encode b/k: json: unsupported type: func()"},
		{name: "put/slash in a key", do: func(s Implementation) (any, error) {
			return nil, s.Put("b", "a/b", one)
		}, after: Values{"b": {"a/b": one}}},

		{name: "create/new", seed: Values{"b": {"other": two}}, do: func(s Implementation) (any, error) {
			return nil, s.Create("b", "k", one)
		}, after: Values{"b": {"k": one, "other": two}}},
		{name: "create/existing", seed: Values{"b": {"k": one}}, do: func(s Implementation) (any, error) {
			return nil, s.Create("b", "k", two)
		}, wantErr: state.ErrExists, wantMsg: "state: b/k: already exists"},
		{name: "create/value JSON cannot take", do: func(s Implementation) (any, error) {
			return nil, s.Create("b", "k", make(chan int))
		}, wantMsg: "state: encode b/k: json: unsupported type: chan int"},

		{name: "modify/changes the value", seed: Values{"b": {"k": two}},
			do:    modify("b", "k", func(v *item) error { v.Count++; return nil }),
			want:  modified{V: item{Name: "dev", Count: 3}, Called: true},
			after: Values{"b": {"k": item{Name: "dev", Count: 3}}}},
		{name: "modify/fn fails: its error, value untouched", seed: Values{"b": {"k": two}},
			do:      modify("b", "k", func(v *item) error { v.Count = 100; return errStop }),
			want:    modified{V: item{Name: "dev", Count: 100}, Called: true},
			wantErr: errStop, wantMsg: "stop"},
		{name: "modify/missing key", seed: Values{"b": {"other": two}},
			do:      modify("b", "k", func(v *item) error { return nil }),
			want:    modified{},
			wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found"},
		{name: "modify/missing bucket",
			do:      modify("b", "k", func(v *item) error { return nil }),
			want:    modified{},
			wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found"},
		{name: "modify/value of another type", seed: Values{"b": {"k": []int{1}}},
			do:      modify("b", "k", func(v *item) error { return nil }),
			want:    modified{},
			wantMsg: "state: decode b/k: json: cannot unmarshal array into Go value of type statetest.item"},
		{name: "modify/fn leaves what JSON cannot take", seed: Values{"b": {"k": two}},
			do: func(s Implementation) (any, error) {
				var v any
				return nil, s.Modify("b", "k", &v, func() error { v = func() {}; return nil })
			},
			wantMsg: "state: encode b/k: json: unsupported type: func()"},

		{name: "delete/the bucket stays", seed: Values{"b": {"k": one}}, do: func(s Implementation) (any, error) {
			if err := s.Delete("b", "k"); err != nil {
				return nil, err
			}
			return getItem("b", "k")(s)
		}, want: item{}, wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found", after: Values{"b": {}}},
		{name: "delete/missing key", seed: Values{"b": {"other": one}}, do: func(s Implementation) (any, error) {
			return nil, s.Delete("b", "k")
		}, wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found"},
		{name: "delete/missing bucket", do: func(s Implementation) (any, error) {
			return nil, s.Delete("b", "k")
		}, wantErr: state.ErrNotFound, wantMsg: "state: b/k: not found"},

		{name: "list/missing bucket", do: func(s Implementation) (any, error) {
			return s.List("b")
		}, want: []string(nil)},
		{name: "list/empty bucket", seed: Values{"b": {"k": one}}, do: func(s Implementation) (any, error) {
			if err := s.Delete("b", "k"); err != nil {
				return nil, err
			}
			return s.List("b")
		}, want: []string(nil), after: Values{"b": {}}},
		{name: "list/byte order", seed: Values{"b": {"b": 1, "a": 2, "B": 3, "10": 4, "9": 5, "a/b": 6}, "c": {"x": 7}},
			do: func(s Implementation) (any, error) {
				return s.List("b")
			}, want: []string{"10", "9", "B", "a", "a/b", "b"}},

		{name: "buckets/none", do: func(s Implementation) (any, error) {
			return s.Buckets()
		}, want: []string(nil)},
		{name: "buckets/sorted", seed: Values{"secrets": {"k": 1}, "pxe-records": {"k": 1}, "Z": {"k": 1}},
			do: func(s Implementation) (any, error) {
				return s.Buckets()
			}, want: []string{"Z", "pxe-records", "secrets"}},
	}

	// Names no store takes, refused the same way by every method, with nothing stored.
	for _, n := range []struct{ name, bucket, key string }{
		{"empty bucket", "", "k"},
		{"slash in a bucket", "a/b", "k"},
		{"empty key", "b", ""},
		{"key too long", "b", strings.Repeat("k", maxKeySize+1)},
	} {
		msg := state.CheckName(n.bucket, n.key).Error()
		calls := []struct {
			method string
			call   func(s Implementation) error
		}{
			{"get", func(s Implementation) error { var v item; return s.Get(n.bucket, n.key, &v) }},
			{"put", func(s Implementation) error { return s.Put(n.bucket, n.key, one) }},
			{"create", func(s Implementation) error { return s.Create(n.bucket, n.key, one) }},
			{"modify", func(s Implementation) error {
				var v item
				return s.Modify(n.bucket, n.key, &v, func() error { return nil })
			}},
			{"delete", func(s Implementation) error { return s.Delete(n.bucket, n.key) }},
		}
		if n.key == "k" {
			calls = append(calls, struct {
				method string
				call   func(s Implementation) error
			}{"list", func(s Implementation) error { _, err := s.List(n.bucket); return err }})
		}
		for _, c := range calls {
			cases = append(cases, contractCase{
				name:    fmt.Sprintf("names/%s/%s", c.method, n.name),
				seed:    Values{"b": {"other": one}},
				do:      func(s Implementation) (any, error) { return nil, c.call(s) },
				wantMsg: msg,
			})
		}
	}
	return cases
}

// Run checks that the stores open returns behave as state.Store does. open returns a new, empty store
// each time it is called, and closes it when t ends if it needs closing.
func Run(t *testing.T, open func(t *testing.T) Implementation) {
	t.Helper()
	for _, tc := range contractCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			seed(t, s, tc.seed)
			got, err := tc.do(s)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			switch {
			case tc.wantErr == nil && tc.wantMsg == "" && err != nil:
				t.Errorf("error: %v, want none", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("error: %v, want %v", err, tc.wantErr)
			case tc.wantMsg != "" && (err == nil || err.Error() != tc.wantMsg):
				t.Errorf("error: %v, want %q", err, tc.wantMsg)
			}
			after := tc.after
			if after == nil {
				after = tc.seed
			}
			if diff := cmp.Diff(encoded(t, after), dump(t, s)); diff != "" {
				t.Errorf("store afterwards (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("modify/a panic in fn is the caller's and changes nothing", func(t *testing.T) {
		s := open(t)
		seed(t, s, Values{"b": {"k": item{Count: 1}}})
		func() {
			defer func() {
				if r := recover(); r != "boom" {
					t.Errorf("recovered %v, want the caller's own panic value", r)
				}
			}()
			var v item
			_ = s.Modify("b", "k", &v, func() error { v.Count = 9; panic("boom") })
		}()
		// Nothing stored, and the store still takes writes.
		var v item
		if err := s.Modify("b", "k", &v, func() error { v.Count++; return nil }); err != nil {
			t.Fatalf("Modify after a panic: %v", err)
		}
		if diff := cmp.Diff(encoded(t, Values{"b": {"k": item{Count: 2}}}), dump(t, s)); diff != "" {
			t.Errorf("store afterwards (-want +got):\n%s", diff)
		}
	})

	t.Run("values are copies", func(t *testing.T) {
		s := open(t)
		v := item{Name: "a", Data: []byte("abc"), Tags: []string{"x"}}
		if err := s.Put("b", "k", v); err != nil {
			t.Fatal(err)
		}
		v.Data[0], v.Tags[0] = 'z', "changed after Put"
		var got item
		if err := s.Get("b", "k", &got); err != nil {
			t.Fatal(err)
		}
		got.Data[1] = 'z'
		var again item
		if err := s.Get("b", "k", &again); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(item{Name: "a", Data: []byte("abc"), Tags: []string{"x"}}, again); diff != "" {
			t.Errorf("stored value changed with the caller's copies (-want +got):\n%s", diff)
		}
	})

	t.Run("create/one of concurrent creates wins", func(t *testing.T) {
		s := open(t)
		const n = 16
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { errs[i] = s.Create("b", "k", item{Count: i}) })
		}
		wg.Wait()
		created := 0
		for _, err := range errs {
			switch {
			case err == nil:
				created++
			case !errors.Is(err, state.ErrExists):
				t.Errorf("Create: %v", err)
			}
		}
		if created != 1 {
			t.Errorf("%d concurrent Creates succeeded, want 1", created)
		}
	})

	t.Run("modify/concurrent modifies lose no update", func(t *testing.T) {
		s := open(t)
		seed(t, s, Values{"b": {"counter": item{}}})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					var v item
					if err := s.Modify("b", "counter", &v, func() error { v.Count++; return nil }); err != nil {
						t.Error(err)
					}
					var r item
					if err := s.Get("b", "counter", &r); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		var v item
		if err := s.Get("b", "counter", &v); err != nil || v.Count != 40 {
			t.Errorf("counter = %d, %v; want 40", v.Count, err)
		}
	})
}

func seed(t *testing.T, s Implementation, values Values) {
	t.Helper()
	for bucket, kv := range values {
		for key, v := range kv {
			if err := s.Put(bucket, key, v); err != nil {
				t.Fatalf("seed %s/%s: %v", bucket, key, err)
			}
		}
	}
}

// encoded is values as a store holds them: JSON text by bucket and key.
func encoded(t *testing.T, values Values) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for bucket, kv := range values {
		out[bucket] = map[string]string{}
		for key, v := range kv {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("encode %s/%s: %v", bucket, key, err)
			}
			out[bucket][key] = string(b)
		}
	}
	return out
}

// dump is everything s holds, read through its own methods.
func dump(t *testing.T, s Implementation) map[string]map[string]string {
	t.Helper()
	buckets, err := s.Buckets()
	if err != nil {
		t.Fatalf("Buckets: %v", err)
	}
	out := map[string]map[string]string{}
	for _, bucket := range buckets {
		keys, err := s.List(bucket)
		if err != nil {
			t.Fatalf("List(%s): %v", bucket, err)
		}
		out[bucket] = map[string]string{}
		for _, key := range keys {
			var raw json.RawMessage
			if err := s.Get(bucket, key, &raw); err != nil {
				t.Fatalf("Get(%s, %s): %v", bucket, key, err)
			}
			out[bucket][key] = string(raw)
		}
	}
	return out
}
