package statetest

// Broken is a store whose every call fails with Err, unchanged, as a state file does that cannot be
// read: a test hands it to a consumer to see that the consumer reports the error with its own subject
// (what it was doing, and to which cluster, machine or key) rather than swallowing it. Modify never
// calls its function.
type Broken struct {
	Err error
}

var _ Implementation = Broken{}

// Get implements state.Getter.
func (b Broken) Get(bucket, key string, v any) error { return b.Err }

// List implements state.Lister.
func (b Broken) List(bucket string) ([]string, error) { return nil, b.Err }

// Put implements state.Putter.
func (b Broken) Put(bucket, key string, v any) error { return b.Err }

// Create implements state.Creator.
func (b Broken) Create(bucket, key string, v any) error { return b.Err }

// Modify implements state.Modifier.
func (b Broken) Modify(bucket, key string, v any, fn func() error) error { return b.Err }

// Delete implements state.Deleter.
func (b Broken) Delete(bucket, key string) error { return b.Err }

// Buckets fails with Err.
func (b Broken) Buckets() ([]string, error) { return nil, b.Err }

// Close fails with Err.
func (b Broken) Close() error { return b.Err }
