package vsphere

import (
	"context"
	"errors"
	"io"
	"net"
	"reflect"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

var (
	// ErrInvalidConfig: a Config field is missing or malformed; the error names the field.
	ErrInvalidConfig = errors.New("invalid vsphere config")
	// ErrNotFound: an inventory object the config or the machine spec names does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotKiln: a VM of the machine's name exists in the folder but carries no kiln labels, so kiln
	// neither adopts nor deletes it.
	ErrNotKiln = errors.New("not a kiln machine")
	// ErrNameTaken: a VM of the machine's name exists in the folder and belongs to another cluster.
	ErrNameTaken = errors.New("name taken by a machine of another cluster")
	// ErrNoSnapshot: LinkedClone is set but the template has no current snapshot to clone from.
	ErrNoSnapshot = errors.New("template has no snapshot for a linked clone")
	// ErrIgnitionTooLarge: the base64 Ignition config does not fit vSphere guestinfo.
	ErrIgnitionTooLarge = errors.New("ignition config too large for guestinfo")
	// ErrRetriesExhausted: a transient fault persisted through every attempt.
	ErrRetriesExhausted = errors.New("retries exhausted")
)

// vimError is an error vCenter reported (a SOAP fault or a failed task), told by its fault type and
// localized message; it wraps the original, so govmomi's fault.Is and fault.As see the fault.
type vimError struct {
	msg string
	err error
}

func (e *vimError) Error() string { return e.msg }
func (e *vimError) Unwrap() error { return e.err }

// describe turns a govmomi error into one that says what vCenter said: "<message> (<FaultType>)".
// Errors without a fault (transport, context) are returned as they are.
func describe(err error) error {
	if err == nil {
		return nil
	}
	var (
		f   types.BaseMethodFault
		msg string
	)
	if soap.IsSoapFault(err) {
		sf := soap.ToSoapFault(err)
		msg = sf.String
		if vf, ok := sf.VimFault().(types.BaseMethodFault); ok {
			f = vf
		}
	}
	if f == nil {
		fault.In(err, func(bf types.BaseMethodFault, localized string, _ []types.LocalizableMessage) bool {
			f = bf
			if msg == "" {
				msg = localized
			}
			return true
		})
	}
	if f == nil {
		return err
	}
	name := faultName(f)
	switch {
	case msg == "":
		msg = name
	case msg != name:
		msg += " (" + name + ")"
	}
	return &vimError{msg: msg, err: err}
}

func faultName(f types.BaseMethodFault) string {
	t := reflect.TypeOf(f)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() == "SystemErrorFault" {
		return "SystemError" // govmomi's Go name for the SystemError fault
	}
	return t.Name()
}

// transient reports whether err is worth retrying: a fault vCenter raises for a busy or briefly
// unreachable resource, or a transport failure. Everything else (permissions, bad arguments, missing
// objects, lack of capacity) is permanent: retrying would only delay the error.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if fault.IsTransientError(err) ||
		fault.Is(err, &types.SystemError{}) ||
		fault.Is(err, &types.SystemErrorFault{}) ||
		fault.Is(err, &types.ResourceInUse{}) ||
		fault.Is(err, &types.Timedout{}) ||
		fault.Is(err, &types.HostNotConnected{}) ||
		fault.Is(err, &types.HostNotReachable{}) {
		return true
	}
	if soap.IsSoapFault(err) || soap.IsVimFault(err) || hasFault(err) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func hasFault(err error) bool {
	found := false
	fault.In(err, func(types.BaseMethodFault, string, []types.LocalizableMessage) bool {
		found = true
		return true
	})
	return found
}
