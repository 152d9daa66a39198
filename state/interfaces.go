package state

// The methods of Store one at a time, for consumers to embed in an interface of their own that holds
// only what they call, declared where they use it:
//
//	// TokenStore is what JoinToken needs of the state store.
//	type TokenStore interface {
//		state.Getter
//		state.Modifier
//	}
//
// A consumer so written takes a Store, the fakes of state/statetest, or a store over another backend,
// and says by its signature which buckets it only reads. Each method behaves as Store's does; the
// contract suite statetest.Run holds every implementation to it.

// Getter reads one value: see Store.Get.
type Getter interface {
	Get(bucket, key string, v any) error
}

// Lister lists the keys of a bucket: see Store.List.
type Lister interface {
	List(bucket string) ([]string, error)
}

// Putter stores a value, replacing any there: see Store.Put.
type Putter interface {
	Put(bucket, key string, v any) error
}

// Creator stores a value only if there is none (ErrExists): see Store.Create.
type Creator interface {
	Create(bucket, key string, v any) error
}

// Modifier changes a value in one transaction: see Store.Modify.
type Modifier interface {
	Modify(bucket, key string, v any, fn func() error) error
}

// Deleter removes a value: see Store.Delete.
type Deleter interface {
	Delete(bucket, key string) error
}

// Reader reads a bucket: its keys and their values.
type Reader interface {
	Getter
	Lister
}

var _ interface {
	Reader
	Putter
	Creator
	Modifier
	Deleter
} = (*Store)(nil)
