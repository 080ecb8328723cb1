package natsboot

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	// routeUser is the user name the members of an embedded cluster present to each other; the
	// password is the shared token.
	routeUser = "rso"
	// tlsTimeout bounds a TLS handshake on the embedded server's ports, in seconds (nats-server's unit).
	tlsTimeout = 2.0
)

// TLSFiles names PEM files: a certificate with its private key, and the certificate authority that
// signed the certificates of the other side.
type TLSFiles struct {
	Cert, Key, CA string
}

// Set reports whether any file is named.
func (f TLSFiles) Set() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Credentials are what rso presents to an external NATS, or, for an embedded one, what its ports require.
type Credentials struct {
	// Token is a shared secret. An embedded server requires it on every port it opens (client port,
	// route port, and the loopback client port of a cluster member); an external one is sent it.
	Token string
	// Creds is a file with a user JWT and its nkey seed (an external NATS with decentralized auth).
	Creds string
	// NkeySeed is a file with an nkey seed (an external NATS with nkey users).
	NkeySeed string
	// TLS: for an external NATS, CA verifies the server and Cert/Key are the client certificate. For an
	// embedded server, Cert/Key serve TLS on its client and route ports, and CA verifies the other
	// members' certificates on routes (both sides of a route present one).
	TLS TLSFiles
}

// clientOptions are the nats.go options that present c to a server over TCP.
func (c Credentials) clientOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.Creds != "" {
		if err := readable(c.Creds, "credentials file"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.NkeySeed != "" {
		opt, err := nats.NkeyOptionFromSeed(c.NkeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s: %s", c.NkeySeed, reason(err))
		}
		opts = append(opts, opt)
	}
	t := c.TLS
	if (t.Cert == "") != (t.Key == "") {
		return nil, errors.New("a TLS client certificate needs both its certificate and its key file")
	}
	if t.Cert != "" {
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			return nil, fmt.Errorf("TLS certificate %s with key %s: %s", t.Cert, t.Key, reason(err))
		}
		opts = append(opts, nats.ClientCert(t.Cert, t.Key))
	}
	if t.CA != "" {
		if err := readable(t.CA, "TLS CA file"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(t.CA)) // implies TLS, as a tls:// URL does
	}
	return opts, nil
}

// secure sets up o, the options of an embedded server, to require c on every port it opens.
func (c Credentials) secure(o *server.Options) error {
	if c.Creds != "" || c.NkeySeed != "" {
		return errors.New("credentials and nkey files are for an external NATS; the embedded one takes a token")
	}
	if c.Token != "" {
		o.Authorization = c.Token
		if o.Cluster.Port != 0 {
			o.Cluster.Username, o.Cluster.Password = routeUser, c.Token
			for _, r := range o.Routes { // every member accepts only this user on its route port
				r.User = url.UserPassword(routeUser, c.Token)
			}
		}
	}
	t := c.TLS
	if !t.Set() {
		return nil
	}
	if t.Cert == "" || t.Key == "" {
		return errors.New("TLS on the embedded NATS needs a certificate and its key file")
	}
	clientTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA})
	if err != nil {
		return fmt.Errorf("embedded NATS TLS: %w", err)
	}
	o.TLS, o.TLSConfig, o.TLSTimeout = true, clientTLS, tlsTimeout
	if o.Cluster.Port == 0 {
		return nil
	}
	if t.CA == "" {
		return errors.New("TLS between cluster members needs the CA file that signed their certificates")
	}
	routeTLS, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA, Verify: true})
	if err != nil {
		return fmt.Errorf("embedded NATS route TLS: %w", err)
	}
	// A member is a TLS server to the routes that dial it and a client of those it dials; as in
	// nats-server's own configuration, both sides verify against the same CA.
	routeTLS.RootCAs = routeTLS.ClientCAs
	o.Cluster.TLSConfig, o.Cluster.TLSTimeout = routeTLS, tlsTimeout
	return nil
}

// readable checks that a file named in the configuration can be read, so that a typo is reported
// before nats.go's first connection attempt hides it behind a generic error.
func readable(name, what string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("%s %s: %s", what, name, reason(err))
	}
	return f.Close()
}
