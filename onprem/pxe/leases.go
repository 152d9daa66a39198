package pxe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
)

// Leases hands out the addresses of a range, one per MAC, and keeps them: a machine gets the same
// address every time. Safe for concurrent use.
type Leases struct {
	first, last uint32

	mu    sync.Mutex
	byMAC map[string]uint32
	byIP  map[uint32]string
	next  uint32
}

// NewLeases returns leases over the inclusive range first..last (IPv4).
func NewLeases(first, last net.IP) (*Leases, error) {
	f, l := first.To4(), last.To4()
	if f == nil || l == nil {
		return nil, fmt.Errorf("pxe: lease range %s-%s: not IPv4", first, last)
	}
	a, b := binary.BigEndian.Uint32(f), binary.BigEndian.Uint32(l)
	if a > b {
		return nil, fmt.Errorf("pxe: lease range %s-%s: first is after last", first, last)
	}
	return &Leases{first: a, last: b, next: a, byMAC: map[string]uint32{}, byIP: map[uint32]string{}}, nil
}

// ErrRangeFull is returned when every address of the range is leased.
var ErrRangeFull = errors.New("pxe: every address of the lease range is taken")

// Allocate returns mac's address, leasing the next free one on first use.
func (l *Leases) Allocate(mac string) (net.IP, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.byMAC[mac]; ok {
		return toIP(a), nil
	}
	size := l.last - l.first + 1
	for range size {
		a := l.next
		l.next++
		if l.next > l.last || l.next < l.first {
			l.next = l.first
		}
		if _, taken := l.byIP[a]; !taken {
			l.byMAC[mac], l.byIP[a] = a, mac
			return toIP(a), nil
		}
	}
	return nil, ErrRangeFull
}

// Restore re-leases ip to mac (from the boot records of an earlier run) if ip is in the range and free.
func (l *Leases) Restore(mac string, ip net.IP) bool {
	v4 := ip.To4()
	if v4 == nil {
		return false
	}
	a := binary.BigEndian.Uint32(v4)
	l.mu.Lock()
	defer l.mu.Unlock()
	if a < l.first || a > l.last {
		return false
	}
	if _, taken := l.byIP[a]; taken {
		return false
	}
	if _, has := l.byMAC[mac]; has {
		return false
	}
	l.byMAC[mac], l.byIP[a] = a, mac
	return true
}

// Leased returns mac's address if it has one.
func (l *Leases) Leased(mac string) (net.IP, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.byMAC[mac]
	if !ok {
		return nil, false
	}
	return toIP(a), true
}

func toIP(a uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a)
	return ip
}
