package providertest

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/kiln-dev/kiln/provisioner/converge"
)

// Store keeps the converge executor's memory between passes (converge.Store), as JSON as kiln's
// state store does, so that what a pass saves must survive the round trip. The zero value is empty.
type Store struct {
	mu   sync.Mutex
	data []byte
}

// Load returns the saved memory, or a zero Memory before the first save.
func (s *Store) Load(context.Context) (converge.Memory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m converge.Memory
	if s.data == nil {
		return m, nil
	}
	return m, json.Unmarshal(s.data, &m)
}

// Save keeps m.
func (s *Store) Save(_ context.Context, m converge.Memory) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = b
	return nil
}
