// Package statetest holds fakes of the state store for the tests of its consumers, and the contract
// suite that every implementation of the store passes, the fakes included, so that a fake cannot
// drift from state.Store.
//
// The fakes come as matchbox's storage/testfakes do: fixed (NewFixed, preloaded with values), empty
// (NewEmpty) and broken (Broken, every call fails). The first two are a Memory: values are kept as
// JSON, as the real store keeps them, so a test sees the same copies, the same ErrNotFound and
// ErrExists, and the same Modify.
package statetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/state"
)

// Values are the contents of a store: bucket, then key, then a value that encodes to JSON.
type Values map[string]map[string]any

// Memory is a state store in memory that behaves as state.Store does, less the file: JSON values in
// named buckets, one writer at a time, readers never waiting for a writer's Modify. Safe for
// concurrent use.
type Memory struct {
	// write is held by a writer for the whole of its change, as bbolt's one read-write transaction
	// is; mu guards buckets, and is held only to read or swap a value.
	write sync.Mutex

	mu      sync.RWMutex
	buckets map[string]map[string][]byte
	closes  int
}

// NewEmpty returns a store with nothing in it.
func NewEmpty() *Memory {
	return &Memory{buckets: map[string]map[string][]byte{}}
}

// NewFixed returns a store that holds values; it fails t if one of them does not encode.
func NewFixed(t testing.TB, values Values) *Memory {
	t.Helper()
	m := NewEmpty()
	for bucket, kv := range values {
		for key, v := range kv {
			if err := m.Put(bucket, key, v); err != nil {
				t.Fatalf("statetest: fixed store: %v", err)
			}
		}
	}
	return m
}

var _ Implementation = (*Memory)(nil)

// Put implements state.Putter.
func (m *Memory) Put(bucket, key string, v any) error {
	plain, err := encode(bucket, key, v)
	if err != nil {
		return err
	}
	m.write.Lock()
	defer m.write.Unlock()
	m.put(bucket, key, plain)
	return nil
}

// Create implements state.Creator.
func (m *Memory) Create(bucket, key string, v any) error {
	plain, err := encode(bucket, key, v)
	if err != nil {
		return err
	}
	m.write.Lock()
	defer m.write.Unlock()
	if _, ok := m.get(bucket, key); ok {
		return fmt.Errorf("state: %s/%s: %w", bucket, key, state.ErrExists)
	}
	m.put(bucket, key, plain)
	return nil
}

// Get implements state.Getter.
func (m *Memory) Get(bucket, key string, v any) error {
	if err := state.CheckName(bucket, key); err != nil {
		return err
	}
	plain, ok := m.get(bucket, key)
	if !ok {
		return fmt.Errorf("state: %s/%s: %w", bucket, key, state.ErrNotFound)
	}
	return decode(bucket, key, plain, v)
}

// Modify implements state.Modifier: v is read, fn changes it, and v is stored, with no other writer
// in between; if fn fails, or panics, nothing is stored.
func (m *Memory) Modify(bucket, key string, v any, fn func() error) error {
	if err := state.CheckName(bucket, key); err != nil {
		return err
	}
	m.write.Lock()
	defer m.write.Unlock()
	plain, ok := m.get(bucket, key)
	if !ok {
		return fmt.Errorf("state: %s/%s: %w", bucket, key, state.ErrNotFound)
	}
	if err := decode(bucket, key, plain, v); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return err
	}
	plain, err := encode(bucket, key, v)
	if err != nil {
		return err
	}
	m.put(bucket, key, plain)
	return nil
}

// Delete implements state.Deleter. The bucket stays, empty, as it does in the state file.
func (m *Memory) Delete(bucket, key string) error {
	if err := state.CheckName(bucket, key); err != nil {
		return err
	}
	m.write.Lock()
	defer m.write.Unlock()
	if _, ok := m.get(bucket, key); !ok {
		return fmt.Errorf("state: %s/%s: %w", bucket, key, state.ErrNotFound)
	}
	m.mu.Lock()
	delete(m.buckets[bucket], key)
	m.mu.Unlock()
	return nil
}

// List implements state.Lister: the keys in byte order, none (nil) for a bucket that does not exist.
func (m *Memory) List(bucket string) ([]string, error) {
	if err := state.CheckName(bucket, "-"); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var keys []string
	for k := range m.buckets[bucket] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// Buckets returns the names of the buckets, sorted, as state.Store.Buckets does.
func (m *Memory) Buckets() ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var names []string
	for b := range m.buckets {
		names = append(names, b)
	}
	slices.Sort(names)
	return names, nil
}

// Close counts the call and keeps the values: a state file outlives its handle, so one Memory can
// stand for a file that is opened and closed again and again.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closes++
	m.mu.Unlock()
	return nil
}

// Closes is how many times Close was called.
func (m *Memory) Closes() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.closes
}

func (m *Memory) get(bucket, key string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	plain, ok := m.buckets[bucket][key]
	return plain, ok
}

func (m *Memory) put(bucket, key string, plain []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.buckets[bucket]
	if !ok {
		b = map[string][]byte{}
		m.buckets[bucket] = b
	}
	b[key] = plain
}

// encode and decode say what state.Store says of a value JSON cannot take.
func encode(bucket, key string, v any) ([]byte, error) {
	if err := state.CheckName(bucket, key); err != nil {
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
