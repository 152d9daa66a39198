package statetest_test

import (
	"errors"
	"testing"

	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

func TestMemoryContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Implementation { return statetest.NewEmpty() })
}

func TestFixed(t *testing.T) {
	type secret struct {
		Key []byte `json:"key"`
	}
	s := statetest.NewFixed(t, statetest.Values{"secrets": {"prod": secret{Key: []byte{1, 2}}}})
	var got secret
	if err := s.Get("secrets", "prod", &got); err != nil || len(got.Key) != 2 {
		t.Fatalf("Get = %+v, %v; want the fixed value", got, err)
	}
	if err := s.Get("secrets", "dev", &got); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want state.ErrNotFound", err)
	}
	if err := s.Close(); err != nil || s.Closes() != 1 {
		t.Errorf("Close = %v, %d closes", err, s.Closes())
	}
	// Closing keeps the values, as closing a state file does.
	if err := s.Get("secrets", "prod", &got); err != nil {
		t.Errorf("Get after Close: %v", err)
	}
}

func TestBroken(t *testing.T) {
	errDisk := errors.New("disk on fire")
	b := statetest.Broken{Err: errDisk}
	called := false
	var v int
	errs := []error{
		b.Get("b", "k", &v), b.Put("b", "k", 1), b.Create("b", "k", 1), b.Delete("b", "k"),
		b.Modify("b", "k", &v, func() error { called = true; return nil }), b.Close(),
	}
	_, err := b.List("b")
	errs = append(errs, err)
	_, err = b.Buckets()
	errs = append(errs, err)
	for i, err := range errs {
		if err != errDisk {
			t.Errorf("call %d = %v, want the given error", i, err)
		}
	}
	if called {
		t.Error("Broken.Modify called its function")
	}
}
