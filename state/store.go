// Package state is kiln's embedded state store: one bbolt file, written by one kiln process at a time,
// holding JSON values in named buckets. Every value is sealed with XChaCha20-Poly1305 under the store key
// and bound to its bucket and key, so a value that is changed, moved or read with another key fails
// authentication instead of being used. Bucket names and keys are not encrypted.
//
// A damaged file is reported as ErrCorrupt with its path, never repaired or replaced: the caller
// decides, and secrets that were generated once are never silently regenerated.
package state

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of a store key: 32 bytes.
const KeySize = chacha20poly1305.KeySize

// LockTimeout is how long Open waits for another process to release the state file.
const LockTimeout = time.Second

// formatV1 is the first byte of every sealed value: version 1 is
// formatV1 || 24-byte nonce || XChaCha20-Poly1305(JSON) with aadPrefix+bucket+"/"+key as additional data.
const (
	formatV1  byte = 1
	aadPrefix      = "kiln-state-v1/"
)

// Store is an open state file. Its methods are safe for concurrent use; only one process can have the
// file open at a time.
type Store struct {
	db   *bbolt.DB
	aead cipher.AEAD
	path string
}

// Open opens the state file at path with the 32-byte key, creating it (mode 0600, parent directories
// 0700) if it does not exist. A file that other users may read or write is refused, as is one that is
// not a readable bbolt database (ErrCorrupt) or that another process holds (ErrLocked, after
// LockTimeout).
func Open(path string, key []byte) (*Store, error) {
	return open(path, key, LockTimeout)
}

func open(path string, key []byte, lockTimeout time.Duration) (*Store, error) {
	if path == "" {
		return nil, errors.New("state: open: empty path")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("state: open %s: key is %d bytes, want %d", path, len(key), KeySize)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	if err := prepareFile(path, lockTimeout); err != nil {
		return nil, err
	}
	db, err := openDB(path, lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, aead: aead, path: path}
	if err := s.check(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// prepareFile makes sure path is an existing, initialised bbolt file that only its owner can read.
//
// A new store is initialised under a temporary name and linked into place, so a file at path is never
// legitimately empty: an empty one was damaged (truncated), and is reported rather than re-initialised
// as if it had never held anything.
func prepareFile(path string, lockTimeout time.Duration) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path, lockTimeout); err != nil {
			return err
		}
		fi, err = os.Stat(path)
	}
	if err != nil {
		return fmt.Errorf("state: open %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("state: open %s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return fmt.Errorf("state: open %s: mode is %04o, so other users may read or change the cluster secrets in it; "+
			"it must be 0600: run chmod 600 %s (and check who may have copied it)", path, perm, path)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("state: open %s: %w: the file is empty (truncated?); restore it from a backup, "+
			"or remove it only if no cluster was ever created with it", path, ErrCorrupt)
	}
	return nil
}

// create initialises a new bbolt file next to path and links it into place; if another process got
// there first, its file is kept.
func create(path string, lockTimeout time.Duration) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	// CreateTemp already uses 0600; Chmod makes it exact whatever the umask.
	err = tmp.Chmod(0o600)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	db, err := bbolt.Open(tmpName, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	if err := os.Link(tmpName, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// syncDir makes a new directory entry durable; where directories cannot be synced it does nothing.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// openDB opens path with bbolt, turning its panics and memory faults on a damaged file into ErrCorrupt.
func openDB(path string, lockTimeout time.Duration) (db *bbolt.DB, err error) {
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			// bbolt panicked half-way: close the file to release the lock. Its mapping cannot be
			// reached and stays until the process exits.
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, corrupt(path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: lockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("state: state file %s is %w", path, ErrLocked)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("state: open %s: %w: %w", path, ErrCorrupt, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	default:
		// Anything else bbolt says about a file that exists and is locked is about its contents
		// (file size too small, mmap beyond the end, ...).
		return nil, fmt.Errorf("state: open %s: %w: %w", path, ErrCorrupt, err)
	}
}

func corrupt(path string, r any) error {
	return fmt.Errorf("state: %s: %w (%v); restore it from a backup", path, ErrCorrupt, r)
}

// guard runs fn, turning a panic or memory fault in bbolt on a damaged file into ErrCorrupt. A panic in
// a caller's own function is not bbolt's and is passed on (see Modify).
func (s *Store) guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if p, ok := r.(callerPanic); ok {
				panic(p.v)
			}
			err = corrupt(s.path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
}

type callerPanic struct{ v any }

// check reads every page reachable from the root once, so that a truncated or overwritten file fails
// at Open rather than at the first Get.
func (s *Store) check() error {
	return s.guard(func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			fi, err := os.Stat(s.path)
			if err != nil {
				return fmt.Errorf("state: open %s: %w", s.path, err)
			}
			if tx.Size() > fi.Size() {
				return fmt.Errorf("state: open %s: %w: the file is %d bytes, its database %d (truncated?)",
					s.path, ErrCorrupt, fi.Size(), tx.Size())
			}
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error { return nil })
			})
		})
	})
}

// Path is the state file's path.
func (s *Store) Path() string { return s.path }

// Close releases the state file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", s.path, err)
	}
	return nil
}

// Put stores v, encoded as JSON, under bucket/key, replacing any value there.
func (s *Store) Put(bucket, key string, v any) error {
	plain, err := encode(bucket, key, v)
	if err != nil {
		return err
	}
	return s.guard(func() error {
		return s.db.Update(func(tx *bbolt.Tx) error {
			return s.put(tx, bucket, key, plain)
		})
	})
}

// Create stores v under bucket/key only if nothing is there yet; otherwise it returns ErrExists. The
// check and the write are one transaction.
func (s *Store) Create(bucket, key string, v any) error {
	plain, err := encode(bucket, key, v)
	if err != nil {
		return err
	}
	return s.guard(func() error {
		return s.db.Update(func(tx *bbolt.Tx) error {
			if b := tx.Bucket([]byte(bucket)); b != nil && b.Get([]byte(key)) != nil {
				return fmt.Errorf("state: %s/%s: %w", bucket, key, ErrExists)
			}
			return s.put(tx, bucket, key, plain)
		})
	})
}

// Get decodes the JSON value under bucket/key into v. It returns ErrNotFound if there is none and
// ErrTampered if the value does not authenticate.
func (s *Store) Get(bucket, key string, v any) error {
	if err := CheckName(bucket, key); err != nil {
		return err
	}
	var plain []byte
	err := s.guard(func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			var err error
			plain, err = s.get(tx, bucket, key)
			return err
		})
	})
	if err != nil {
		return err
	}
	return decode(bucket, key, plain, v)
}

// Modify reads the value under bucket/key into v, calls fn, which changes v, and stores v again, all in
// one transaction. If fn returns an error nothing is stored and Modify returns it. It returns
// ErrNotFound if there is no value.
func (s *Store) Modify(bucket, key string, v any, fn func() error) error {
	if err := CheckName(bucket, key); err != nil {
		return err
	}
	return s.guard(func() error {
		return s.db.Update(func(tx *bbolt.Tx) error {
			plain, err := s.get(tx, bucket, key)
			if err != nil {
				return err
			}
			if err := decode(bucket, key, plain, v); err != nil {
				return err
			}
			if err := callFn(fn); err != nil {
				return err
			}
			if plain, err = encode(bucket, key, v); err != nil {
				return err
			}
			return s.put(tx, bucket, key, plain)
		})
	})
}

// callFn marks a panic in the caller's function so that guard does not take it for a damaged file.
func callFn(fn func() error) error {
	defer func() {
		if r := recover(); r != nil {
			panic(callerPanic{r})
		}
	}()
	return fn()
}

// Delete removes bucket/key; it returns ErrNotFound if there is nothing to remove.
func (s *Store) Delete(bucket, key string) error {
	if err := CheckName(bucket, key); err != nil {
		return err
	}
	return s.guard(func() error {
		return s.db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucket))
			if b == nil || b.Get([]byte(key)) == nil {
				return fmt.Errorf("state: %s/%s: %w", bucket, key, ErrNotFound)
			}
			if err := b.Delete([]byte(key)); err != nil {
				return fmt.Errorf("state: delete %s/%s: %w", bucket, key, err)
			}
			return nil
		})
	})
}

// List returns the keys in bucket in byte order; a bucket that does not exist has none.
func (s *Store) List(bucket string) ([]string, error) {
	if err := CheckName(bucket, "-"); err != nil {
		return nil, err
	}
	var keys []string
	err := s.guard(func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucket))
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, _ []byte) error {
				keys = append(keys, string(k))
				return nil
			})
		})
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// Buckets returns the names of the buckets in the store, sorted.
func (s *Store) Buckets() ([]string, error) {
	var names []string
	err := s.guard(func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
				names = append(names, string(name))
				return nil
			})
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

func (s *Store) put(tx *bbolt.Tx, bucket, key string, plain []byte) error {
	b, err := tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("state: put %s/%s: %w", bucket, key, err)
	}
	if err := b.Put([]byte(key), s.seal(bucket, key, plain)); err != nil {
		return fmt.Errorf("state: put %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (s *Store) get(tx *bbolt.Tx, bucket, key string) ([]byte, error) {
	b := tx.Bucket([]byte(bucket))
	if b == nil {
		return nil, fmt.Errorf("state: %s/%s: %w", bucket, key, ErrNotFound)
	}
	sealed := b.Get([]byte(key))
	if sealed == nil {
		return nil, fmt.Errorf("state: %s/%s: %w", bucket, key, ErrNotFound)
	}
	// unseal copies: sealed is only valid inside the transaction.
	return s.unseal(bucket, key, sealed)
}

func (s *Store) seal(bucket, key string, plain []byte) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = formatV1
	nonce := out[1 : 1+ns]
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+)
	return s.aead.Seal(out, nonce, plain, aad(bucket, key))
}

func (s *Store) unseal(bucket, key string, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, fmt.Errorf("state: %s/%s: %w", bucket, key, ErrTampered)
	}
	if sealed[0] != formatV1 {
		return nil, fmt.Errorf("state: %s/%s: %w: value format %d is unknown (written by a newer kiln?)",
			bucket, key, ErrCorrupt, sealed[0])
	}
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() {
		return nil, fmt.Errorf("state: %s/%s: %w", bucket, key, ErrTampered)
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad(bucket, key))
	if err != nil {
		return nil, fmt.Errorf("state: %s/%s: %w", bucket, key, ErrTampered)
	}
	return plain, nil
}

func aad(bucket, key string) []byte {
	return []byte(aadPrefix + bucket + "/" + key)
}

// CheckName refuses names that bbolt cannot store or that would make the additional data ambiguous: a
// bucket name holds no "/", so aadPrefix+bucket+"/"+key names exactly one bucket and key. Every
// method of Store applies it first (List to the bucket alone); another implementation applies it too,
// so that what one store accepts the other does.
func CheckName(bucket, key string) error {
	switch {
	case bucket == "":
		return errors.New("state: empty bucket name")
	case strings.Contains(bucket, "/"):
		return fmt.Errorf("state: bucket name %q contains '/'", bucket)
	case key == "":
		return fmt.Errorf("state: %s: empty key", bucket)
	case len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("state: %s: key of %d bytes is longer than %d", bucket, len(key), bbolt.MaxKeySize)
	}
	return nil
}

func encode(bucket, key string, v any) ([]byte, error) {
	if err := CheckName(bucket, key); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("state: encode %s/%s: %w", bucket, key, err)
	}
	return b, nil
}

func decode(bucket, key string, plain []byte, v any) error {
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("state: decode %s/%s: %w", bucket, key, err)
	}
	return nil
}
