package podnet

// The network namespace helpers of this package's tests, for its external tests (apiserver_test.go,
// which is external because the control-plane harness it starts renders configs that name this
// package's unit).
var (
	NewNetns        = newNetns
	RequireNetAdmin = requireNetAdmin
	RoutesIn        = routesIn
	Run             = run
)
