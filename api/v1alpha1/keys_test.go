package v1alpha1

import (
	"encoding/base64"

	"golang.org/x/crypto/ssh"
)

// Public keys made with ssh-keygen for the tests.
const (
	keyED25519  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6+N/jm3JfF84PtXSUWc/AqxS16c7uoZdcfPZsWwbKO admin@example.com"
	keyECDSA256 = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ7gT4GfMAIVWDTN8soOlsMBuEAiXOyaC7S283bVl50GC3F5PgI3YmqnPi/pbx2PgjH6oG+Xr1S8jfECZz32D1o= admin@example.com"
	keyECDSA384 = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBngeHQu+NHUBQDh5+y022lMrL4ohVB/PQ4MfH6kTJ9lV9uaWI8P9VFwK66P0iU0a3MsX8RhMrz9Dg+s3+tqQ2EtstdIFQ1BWm/HuTkSJFBTtNs3r06eFZ9wXlvp8CT2+w== admin@example.com"
	keyRSA3072  = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCnIOu+z17ok9u6p1cH/3rwFCvgQA+2xVc3qpLm7AyaLelXCsO58d/kUqqED5eTadOncLWYn9a1JNrkEktgsB+iKUwY5sK+1NOsy96xlUha11bV6hPUTx/bXvUehFOa6vHQyHSfZWIFEGiAoJ/3JLSGHkJxKPMdu77pZ9tiWyCaPCDGMQ7P7NWGtaLACerMGinU0wMo00myhEcsbecXZJUJ1qPGZJZ1+u0HaY1BKgqnD0phUxzwZZgmf37x2OTLUqrXt6pFQgkLbm/G+2F5vUHVHPyjGQjQ24Qv9M9PnnKzpqew0yC0p3egbbnEovlELgD2Aa1a14f4GZJ5bIAE3j/Rvm0O3jfsnzYAIMhQpR6bAdIbFwScatlqeK+iuvHS2ipEFQa6yRg0MxvMqi7scEvV7ma7JKrPdZP27O9DDJq8NMwJGPqTd0eItTW6l6GHuZL/GvNtQ67cV2W/08NnbeZDcJZQQcyfTR2h9KwOqhhJTO8oIB8DviSj6r4cF2w5akk= admin@example.com"
	keyRSA2048  = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDY1tRFbTy2pTRyNFmlt6TVkyBqmhO4VON9C9GVTTf+9vv3gTfbCZwMogvy7DvPQjDc+5POEBTRY2iTMxx7eRSrbKljh9IkO+yCFJjwp4cGqQxC3W4JdagUWakmx7AiE+FLcvVh2ZVflOtz6KfW9Onpl6A6WeBZ78QcNM1aF00WwBZBcgFg9IKoVE7jcIBbPprLIhNwNlZKphdz0DcLdoDgPtU7IZs+rKRr9aIZfVpg3FHsv6wU5HhN1SDDVdXmYGWop08OwwPtpfRhlcueUE1pOCWg7fg1VZjjvFCB/e8WM5ydJ5REqzitpg6PWYitfRVCRUh+TwkQIf1tMf9a9duJ admin@example.com"
	keyDSA      = "ssh-dss AAAAB3NzaC1kc3MAAACBAIm3lwgbeit1MfTaUARr7o1JZKXzRRL61oc3uQaCEOCl8MgLJp/gdsBdpYKycrQl4qJwSqciqE5N5iHkWadK4OvkGp+886AksN0GPjWTDw23S6/NCRInxaCJm10doZZ40qWSLKM+s38KKC1Uj/fFNZ72/pxzDqnwTT0CkYZvjFMBAAAAFQD3G2YGxr/xpUuBroRS/eQthCjxewAAAIBLY2/8qYx4qHA4eDf8zdasEjvHzzlwuRFZ+QRl01ReHod+j+kDw9GUgGPCDstuRH/jvJhLNGXj0h3ykxU6VtPnsChgbYMWcculac+/7vSRPBqSJeP/bBpMdPaTRajb34GcvwXDmPNQqbjeTH0hFavHBpiD6zVB0agoNFB9OvxozAAAAIA/rluJiQAqvCNnqfmJhUpe+aA0UIVrn86AcDJhgefH2ZOMvMG9XWfD88/txXGcABzSa8bioPSKxYTV9+lrQ+5LyjAIcPuVoOxwA6Ikut7rSDU/EX0Tpw6C1hWi2K3VBNPumBA0LcUvKYL/vZ0UNzOs1dzxUaTaO5dbPekvjKoYnQ== root@vm"
	certED25519 = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAINL8tfptir1gjohpYf3ba3LrCnckLaIQcTwtYnS3L5jnAAAAIA6+N/jm3JfF84PtXSUWc/AqxS16c7uoZdcfPZsWwbKOAAAAAAAAAAAAAAABAAAABHRlc3QAAAAIAAAABGtpbG4AAAAAAAAAAP//////////AAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAg9KC3jp930YHosFBL9qFRcK0/0hrNRICznyhR3v1ggFYAAABTAAAAC3NzaC1lZDI1NTE5AAAAQB4eWWB+xbQZiy5ufAMr4idUxvqmDC6xT7O/EUGQX6QygRxbovP1gQ4X4Id/sOMJeZYAIP4ErQZTjLAJYVgflQ4= admin@example.com"
)

// skED25519Key is an authorized_keys line for a FIDO security key (sk-ssh-ed25519), built by hand since
// making one needs the hardware.
func skED25519Key() string {
	blob := ssh.Marshal(struct {
		Name        string
		Key         []byte
		Application string
	}{ssh.KeyAlgoSKED25519, make([]byte, 32), "ssh:"})
	return ssh.KeyAlgoSKED25519 + " " + base64.StdEncoding.EncodeToString(blob) + " security-key"
}
