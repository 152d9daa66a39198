// Package clusterapply brings a running cluster's objects to what kiln renders: Apply applies
// manifests with server-side apply as field manager "kiln" and says, per object, whether it was
// created, configured or unchanged. `kiln cluster secure` applies SecureManifests (the spec's
// namespaces with their Pod Security labels and kiln's RBAC bindings) with it, and a new
// control-plane node's cluster init applies its rendered manifests the same way.
package clusterapply
