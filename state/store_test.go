package state

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"
)

type record struct {
	Name   string   `json:"name"`
	Count  int      `json:"count"`
	Secret []byte   `json:"secret"`
	Tags   []string `json:"tags,omitempty"`
}

func testKey(seed byte) []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func openTest(t *testing.T, path string, key []byte) *Store {
	t.Helper()
	s, err := Open(path, key)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// writeRaw changes the state file underneath the store with bbolt itself, as an attacker or a disk
// would.
func writeRaw(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bbolt.Open: %v", err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatalf("raw update: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, path, bucket, key string) []byte {
	t.Helper()
	var v []byte
	writeRaw(t, path, func(tx *bbolt.Tx) error {
		v = bytes.Clone(tx.Bucket([]byte(bucket)).Get([]byte(key)))
		return nil
	})
	return v
}

func rawPut(t *testing.T, path, bucket, key string, v []byte) {
	t.Helper()
	writeRaw(t, path, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), v)
	})
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.db")
	key := testKey(1)
	s := openTest(t, path, key)

	want := record{Name: "prod", Count: 3, Secret: []byte("hunter2"), Tags: []string{"a", "b"}}
	if err := s.Put("clusters", "prod", want); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := s.Create("clusters", "dev", record{Name: "dev"}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := s.Put("secrets", "prod", map[string]string{"k": "v"}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	var got record
	if err := s.Get("clusters", "prod", &got); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	keys, err := s.List("clusters")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"dev", "prod"}, keys); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if keys, err := s.List("nothing"); err != nil || len(keys) != 0 {
		t.Errorf("List(missing bucket) = %v, %v, want none", keys, err)
	}
	buckets, err := s.Buckets()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"clusters", "secrets"}, buckets); diff != "" {
		t.Errorf("Buckets (-want +got):\n%s", diff)
	}

	// Plaintext never reaches the file.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"hunter2", `"count"`, `"k":"v"`} {
		if bytes.Contains(raw, []byte(plain)) {
			t.Errorf("state file contains plaintext %q", plain)
		}
	}

	// Values outlive the process.
	s = openTest(t, path, key)
	got = record{}
	if err := s.Get("clusters", "prod", &got); err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get after reopen (-want +got):\n%s", diff)
	}
	if err := s.Delete("clusters", "prod"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Get("clusters", "prod", &got); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete("clusters", "prod"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if err := s.Get("nothing", "x", &got); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing bucket) = %v, want ErrNotFound", err)
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	path := filepath.Join(dir, "state.db")
	openTest(t, path, testKey(1))
	for _, c := range []struct {
		path string
		want os.FileMode
	}{{path, 0o600}, {dir, 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %04o, want %04o", c.path, got, c.want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("state directory holds %v, want only state.db", entries)
	}
}

func TestOpenRefusesLooseMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o640, 0o606, 0o660} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s := openTest(t, path, testKey(1))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, testKey(1))
			if err == nil {
				t.Fatal("Open succeeded on a file other users can reach")
			}
			for _, want := range []string{path, fmt.Sprintf("%04o", mode), "chmod 600"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestCreateTwice(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"), testKey(1))
	if err := s.Create("secrets", "prod", record{Name: "first"}); err != nil {
		t.Fatalf("first Create: %v", err)
	}
	err := s.Create("secrets", "prod", record{Name: "second"})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
	var got record
	if err := s.Get("secrets", "prod", &got); err != nil || got.Name != "first" {
		t.Errorf("after second Create: %+v, %v; want the first value kept", got, err)
	}
}

func TestCreateConcurrent(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"), testKey(1))
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.Create("secrets", "prod", record{Count: i}) })
	}
	wg.Wait()
	var created int
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, ErrExists):
			t.Errorf("Create: %v", err)
		}
	}
	if created != 1 {
		t.Errorf("%d concurrent Creates succeeded, want 1", created)
	}
}

func TestTampered(t *testing.T) {
	const wantMsg = "state: secrets/prod: authentication failed: the state file was altered or damaged, or the key is not the one it was written with"
	tests := []struct {
		name    string
		damage  func(t *testing.T, path string)
		key     []byte
		wantErr error
	}{
		{
			name: "ciphertext byte flipped",
			damage: func(t *testing.T, path string) {
				v := rawGet(t, path, "secrets", "prod")
				v[1+24+3] ^= 0x01
				rawPut(t, path, "secrets", "prod", v)
			},
			wantErr: ErrTampered,
		},
		{
			name: "tag byte flipped",
			damage: func(t *testing.T, path string) {
				v := rawGet(t, path, "secrets", "prod")
				v[len(v)-1] ^= 0x80
				rawPut(t, path, "secrets", "prod", v)
			},
			wantErr: ErrTampered,
		},
		{
			name: "nonce byte flipped",
			damage: func(t *testing.T, path string) {
				v := rawGet(t, path, "secrets", "prod")
				v[5] ^= 0xff
				rawPut(t, path, "secrets", "prod", v)
			},
			wantErr: ErrTampered,
		},
		{
			name: "value truncated",
			damage: func(t *testing.T, path string) {
				v := rawGet(t, path, "secrets", "prod")
				rawPut(t, path, "secrets", "prod", v[:20])
			},
			wantErr: ErrTampered,
		},
		{
			name:    "value emptied",
			damage:  func(t *testing.T, path string) { rawPut(t, path, "secrets", "prod", []byte{}) },
			wantErr: ErrTampered,
		},
		{
			name: "value moved from another key",
			damage: func(t *testing.T, path string) {
				rawPut(t, path, "secrets", "prod", rawGet(t, path, "secrets", "dev"))
			},
			wantErr: ErrTampered,
		},
		{
			name: "value moved from another bucket",
			damage: func(t *testing.T, path string) {
				rawPut(t, path, "secrets", "prod", rawGet(t, path, "other", "prod"))
			},
			wantErr: ErrTampered,
		},
		{
			name:    "wrong key",
			damage:  func(t *testing.T, path string) {},
			key:     testKey(2),
			wantErr: ErrTampered,
		},
		{
			name: "unknown format version",
			damage: func(t *testing.T, path string) {
				v := rawGet(t, path, "secrets", "prod")
				v[0] = 9
				rawPut(t, path, "secrets", "prod", v)
			},
			wantErr: ErrCorrupt,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			s := openTest(t, path, testKey(1))
			for _, kv := range [][2]string{{"secrets", "prod"}, {"secrets", "dev"}, {"other", "prod"}} {
				if err := s.Put(kv[0], kv[1], record{Name: kv[0] + "/" + kv[1], Secret: []byte("s3cret")}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, path)
			key := tc.key
			if key == nil {
				key = testKey(1)
			}
			s = openTest(t, path, key)
			var got record
			err := s.Get("secrets", "prod", &got)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Get() = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == ErrTampered && err.Error() != wantMsg {
				t.Errorf("error = %q, want %q", err, wantMsg)
			}
			if !cmp.Equal(got, record{}) {
				t.Errorf("Get filled in %+v from a value that did not authenticate", got)
			}
			// Modify must not overwrite a value it could not read.
			if err := s.Modify("secrets", "prod", &got, func() error { return nil }); !errors.Is(err, tc.wantErr) {
				t.Errorf("Modify() = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openTest(t, path, testKey(1))
	start := time.Now()
	s, err := open(path, testKey(1), 100*time.Millisecond)
	if err == nil {
		s.Close()
		t.Fatal("second Open succeeded while the file is held")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	if want := fmt.Sprintf("state file %s is locked by another kiln process", path); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v to give up", d)
	}
}

func TestOpenBadKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := Open(filepath.Join(t.TempDir(), "state.db"), make([]byte, n)); err == nil {
			t.Errorf("Open with a %d-byte key succeeded", n)
		}
	}
}

func TestNames(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"), testKey(1))
	tests := []struct {
		name        string
		bucket, key string
		wantErr     bool
	}{
		{name: "plain", bucket: "secrets", key: "prod"},
		{name: "slash in key", bucket: "secrets", key: "prod/a"},
		{name: "empty bucket", bucket: "", key: "prod", wantErr: true},
		{name: "slash in bucket", bucket: "secrets/prod", key: "a", wantErr: true},
		{name: "empty key", bucket: "secrets", key: "", wantErr: true},
		{name: "key too long", bucket: "secrets", key: strings.Repeat("k", bbolt.MaxKeySize+1), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Put(tc.bucket, tc.key, 1)
			if (err != nil) != tc.wantErr {
				t.Errorf("Put() = %v, want error %v", err, tc.wantErr)
			}
		})
	}
	if err := s.Put("secrets", "bad", func() {}); err == nil {
		t.Errorf("Put of a value JSON cannot encode succeeded")
	}
}

func TestModify(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"), testKey(1))
	if err := s.Put("b", "k", record{Count: 1}); err != nil {
		t.Fatal(err)
	}
	var r record
	if err := s.Modify("b", "k", &r, func() error { r.Count++; return nil }); err != nil {
		t.Fatalf("Modify: %v", err)
	}
	errStop := errors.New("stop")
	if err := s.Modify("b", "k", &r, func() error { r.Count = 100; return errStop }); !errors.Is(err, errStop) {
		t.Fatalf("Modify() = %v, want errStop", err)
	}
	var got record
	if err := s.Get("b", "k", &got); err != nil || got.Count != 2 {
		t.Errorf("after Modify: %+v, %v; want Count 2", got, err)
	}
	if err := s.Modify("b", "missing", &r, func() error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Modify(missing) = %v, want ErrNotFound", err)
	}

	// A panic in the caller's function is the caller's, not a damaged file.
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the caller's own panic value", r)
			}
		}()
		_ = s.Modify("b", "k", &r, func() error { panic("boom") })
	}()
	// And the store still works after it.
	if err := s.Get("b", "k", &got); err != nil || got.Count != 2 {
		t.Errorf("after a panicking Modify: %+v, %v", got, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "state.db"), testKey(1))
	if err := s.Put("b", "counter", record{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				var r record
				if err := s.Modify("b", "counter", &r, func() error { r.Count++; return nil }); err != nil {
					t.Error(err)
				}
				if err := s.Put("b", fmt.Sprintf("k%d-%d", i, j), record{Count: j}); err != nil {
					t.Error(err)
				}
				if _, err := s.List("b"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var r record
	if err := s.Get("b", "counter", &r); err != nil || r.Count != 40 {
		t.Errorf("counter = %d, %v; want 40 (no lost update)", r.Count, err)
	}
}

// damagedValues is how many values makeFile writes: enough for several pages of every kind.
const damagedValues = 100

// makeFile writes a state file with enough values to span several pages and returns its bytes.
func makeFile(t *testing.T, path string) []byte {
	t.Helper()
	s, err := Open(path, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	s.db.NoSync = true // a fixture: one fsync per value would make this the slowest test by far
	for i := range damagedValues {
		if err := s.Put(fmt.Sprintf("bucket%d", i%5), fmt.Sprintf("key%03d", i), record{Name: strings.Repeat("x", 600), Count: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDamagedFile damages a state file in many ways and checks that every one is an error from Open or
// from reading, never a panic, never a success that drops data, and that the file is left as it was.
func TestDamagedFile(t *testing.T) {
	orig := makeFile(t, filepath.Join(t.TempDir(), "state.db"))
	const page = 4096
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	overwrite := func(off, n int, with func(int) []byte) []byte {
		b := bytes.Clone(orig)
		copy(b[off:], with(n))
		return b
	}
	zeros := func(n int) []byte { return make([]byte, n) }

	type tcase struct {
		name string
		data []byte
	}
	tests := []tcase{
		{name: "empty", data: []byte{}},
		{name: "one byte", data: []byte{0}},
		{name: "garbage 100 bytes", data: randomBytes(100)},
		{name: "garbage one page", data: randomBytes(page)},
		{name: "garbage 64 KiB", data: randomBytes(64 << 10)},
		{name: "text file", data: []byte("this is not a database\n")},
		{name: "both meta pages zeroed", data: overwrite(0, 2*page, zeros)},
		{name: "both meta pages random", data: overwrite(0, 2*page, randomBytes)},
	}
	for _, n := range []int{page / 2, page, page + 100, 2 * page, 3 * page, len(orig) / 2, len(orig) - page, len(orig) - 1} {
		tests = append(tests, tcase{name: fmt.Sprintf("truncated to %d of %d", n, len(orig)), data: bytes.Clone(orig[:n])})
	}
	for p := 2; p*page < len(orig); p++ {
		tests = append(tests,
			tcase{name: fmt.Sprintf("page %d zeroed", p), data: overwrite(p*page, page, zeros)},
			tcase{name: fmt.Sprintf("page %d random", p), data: overwrite(p*page, page, randomBytes)},
			tcase{name: fmt.Sprintf("page %d header random", p), data: overwrite(p*page, 16, randomBytes)},
			tcase{name: fmt.Sprintf("page %d body random", p), data: overwrite(p*page+16, page-16, randomBytes)},
			tcase{name: fmt.Sprintf("page %d element headers random", p), data: overwrite(p*page+16, 64, randomBytes)},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			before := sha256.Sum256(tc.data)

			err := readAll(path)
			t.Logf("readAll: %v", err)
			if err == nil && !bytes.Equal(tc.data, orig) {
				// Damage that misses every live page (a free page) is harmless; anything else is not.
				t.Logf("damage left every value readable")
			}
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTampered) && !errors.Is(err, ErrNotFound) {
				t.Errorf("error %v is neither ErrCorrupt, ErrTampered nor ErrNotFound", err)
			}
			if err != nil && errors.Is(err, ErrCorrupt) && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			after, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if sha256.Sum256(after) != before {
				t.Errorf("the damaged file was changed by opening it")
			}
		})
	}
}

// readAll opens path and reads back every value makeFile wrote.
func readAll(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic escaped: %v", r)
		}
	}()
	s, err := Open(path, testKey(1))
	if err != nil {
		return err
	}
	defer s.Close()
	for i := range damagedValues {
		var r record
		if err := s.Get(fmt.Sprintf("bucket%d", i%5), fmt.Sprintf("key%03d", i), &r); err != nil {
			return err
		}
		if r.Count != i {
			return fmt.Errorf("key%03d: count %d", i, r.Count)
		}
	}
	return nil
}
