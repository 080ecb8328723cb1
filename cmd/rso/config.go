package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/internal/natsboot"
	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
	"github.com/rso-server/rso/sharedobject"
)

// Config is everything rso takes from flags and the environment, parsed and checked.
type Config struct {
	Addr         string // HTTP HOST:PORT
	DataDir      string // embedded JetStream files; unused with NATS
	NATS         string // external NATS URLs, comma-separated; "" runs the embedded server
	NATSListen   string // HOST:PORT the embedded server opens to other nodes; "" keeps it in-process
	TokenSecret  []byte // HS256 secret for client tokens; nil lets anonymous clients in (loopback only)
	Insecure     bool   // allow anonymous clients on a non-loopback address
	Fsync        bool   // embedded JetStream syncs every write to disk before acknowledging it
	NodeID       string
	ResyncWindow uint64
	TempGrace    time.Duration
	HookTimeout  time.Duration
	Replicas     int
	Limits       sharedobject.Limits
	Demos        bool // serve the browser demos under /demos/ and run their validation hooks

	// The embedded server as one member of a NATS cluster with clustered JetStream ("" and nil: a single server).
	NATSCluster     string   // HOST:PORT of its route listener, where the other members connect
	NATSRoutes      []string // nats://HOST:PORT of the members' route listeners (this one may be among them)
	NATSClusterName string
	StartupTimeout  time.Duration // how long startup waits for NATS and JetStream (a cluster's leaders, the streams)
	// NATSAuth is what the embedded server's ports require, or what rso presents to an external NATS.
	NATSAuth natsboot.Credentials

	// Private chat (relay and p2p).
	RelayTCP        string        // HOST:PORT of the raw TCP relay for native clients; "" = off
	FriendsOnly     bool          // only friends may write to each other
	PresenceGrace   time.Duration // how long a user stays online after its last connection closed
	MaxMessageBytes int           // largest private message body
	RelayLimits     relay.Limits

	// Operating it.
	MetricsAddr string     // HOST:PORT serving /metrics (Prometheus); "" = off
	DebugAddr   string     // loopback HOST:PORT serving /debug/pprof/; "" = off
	AdminToken  []byte     // bearer token for /metrics (and the admin API); nil: loopback only
	LogLevel    slog.Level // debug, info, warn or error
	LogJSON     bool       // -log-format json

	from map[string]string // option name → where its value came from: "-name", "RSO_NAME" or "default"
}

// label names the setting the way the user gave it, for messages that tell them what to change.
func (c *Config) label(name string) string {
	if from := c.from[name]; strings.HasPrefix(from, "RSO_") {
		return from
	}
	return "-" + name
}

// option is one row of the flag table. Every option is a flag -name and an environment variable
// RSO_NAME (upper case, '-' → '_'); set parses and checks a value and stores it in the Config.
type option struct {
	name    string
	def     string // the default as the user would type it
	defText string // how -h shows the default when def is computed
	meaning string
	isBool  bool
	secret  bool // never echo the value
	set     func(c *Config, v string) error
}

func envName(flagName string) string {
	return "RSO_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// options is the flag table. nodeID is the default node id (computed, so it is passed in).
func options(nodeID string) []option {
	d := sharedobject.DefaultLimits()
	rl, pd := relay.DefaultLimits(), messaging.DefaultConfig()
	limit := func(name string, def int, meaning string, field func(*sharedobject.Limits) *int) option {
		return option{name: name, def: strconv.Itoa(def), meaning: meaning, set: func(c *Config, v string) error {
			n, err := positiveInt(v)
			*field(&c.Limits) = n
			return err
		}}
	}
	return []option{
		{name: "addr", def: "127.0.0.1:8080", meaning: "HTTP address (HOST:PORT) for /so and /healthz; without -token-secret it must be a loopback address",
			set: func(c *Config, v string) (err error) { c.Addr = v; return checkHostPort(v, 0) }},
		{name: "data", def: "./data", meaning: "folder for the embedded NATS's JetStream files (unused with -nats)",
			set: func(c *Config, v string) error {
				if strings.TrimSpace(v) == "" {
					return errors.New("want a folder path")
				}
				c.DataDir = v
				return nil
			}},
		{name: "nats", def: "", defText: "embedded", meaning: "external NATS URL[,URL…] (nats://, tls://, ws://, wss://) with JetStream; when set, no embedded server is started",
			set: func(c *Config, v string) error { c.NATS = v; return checkNATSURLs(v) }},
		{name: "nats-listen", def: "", defText: "in-process only", meaning: "HOST:PORT where the embedded NATS accepts other rso nodes (-nats nats://HOST:PORT) and NATS clients; a non-loopback address needs -nats-token (or -insecure)",
			set: func(c *Config, v string) error { c.NATSListen = v; return checkOptionalHostPort(v) }},
		{name: "nats-cluster", def: "", defText: "off", meaning: "HOST:PORT where the embedded NATS accepts the other members of its NATS cluster; with -nats-routes and -node-id it becomes one member of a cluster with clustered JetStream (each member with its own -data); a non-loopback address needs -nats-token or TLS with a CA (or -insecure)",
			set: func(c *Config, v string) error { c.NATSCluster = v; return checkOptionalHostPort(v) }},
		{name: "nats-routes", def: "", defText: "none", meaning: "the -nats-cluster addresses of the cluster's members as nats://HOST:PORT[,…]; listing this node too is harmless, so every member can be given the same list",
			set: func(c *Config, v string) (err error) { c.NATSRoutes, err = parseRoutes(v); return err }},
		{name: "nats-cluster-name", def: "rso", meaning: "name of the embedded NATS cluster, the same on every member (letters, digits, '-', '_')",
			set: func(c *Config, v string) error {
				c.NATSClusterName = v
				if !ids.Valid(v, 64) {
					return errors.New("want 1 to 64 letters, digits, '-' or '_'")
				}
				return nil
			}},
		{name: "nats-token", def: "", defText: "none", secret: true, meaning: "shared secret that every port of the embedded NATS requires (client port, routes, the other members and rso nodes present it); with -nats, the token sent to the external NATS (prefer the environment variable: flags show in ps)",
			set: func(c *Config, v string) error { c.NATSAuth.Token = v; return nil }},
		{name: "nats-creds", def: "", defText: "none", meaning: "with -nats: a NATS credentials file (user JWT and nkey seed) to present to the external NATS",
			set: func(c *Config, v string) error { c.NATSAuth.Creds = v; return nil }},
		{name: "nats-nkey", def: "", defText: "none", meaning: "with -nats: a file with the nkey seed (SU…) to sign in to the external NATS with",
			set: func(c *Config, v string) error { c.NATSAuth.NkeySeed = v; return nil }},
		{name: "nats-tls-cert", def: "", defText: "none", meaning: "PEM certificate: the embedded NATS serves TLS with it on -nats-listen and -nats-cluster; with -nats, the client certificate",
			set: func(c *Config, v string) error { c.NATSAuth.TLS.Cert = v; return nil }},
		{name: "nats-tls-key", def: "", defText: "none", meaning: "PEM private key of -nats-tls-cert",
			set: func(c *Config, v string) error { c.NATSAuth.TLS.Key = v; return nil }},
		{name: "nats-tls-ca", def: "", defText: "none", meaning: "PEM CA certificate: with -nats-cluster, the CA that signed every member's certificate (routes verify each other); with -nats, the CA that signed the server's certificate (implies TLS)",
			set: func(c *Config, v string) error { c.NATSAuth.TLS.CA = v; return nil }},
		{name: "startup-timeout", def: "60s", meaning: "how long startup waits for NATS and JetStream (a cluster's members and leaders, the streams and buckets) before it gives up",
			set: func(c *Config, v string) (err error) { c.StartupTimeout, err = positiveDuration(v); return err }},
		{name: "token-secret", def: "", defText: "none", secret: true, meaning: "HS256 secret for client tokens, at least 16 bytes (prefer the environment variable: flags show in ps)",
			set: func(c *Config, v string) error {
				if v == "" {
					c.TokenSecret = nil
					return nil
				}
				if len(v) < minSecretBytes {
					return fmt.Errorf("too short (%d bytes); use at least %d random bytes, e.g. the output of: openssl rand -hex 32", len(v), minSecretBytes)
				}
				c.TokenSecret = []byte(v)
				return nil
			}},
		{name: "insecure", def: "false", isBool: true, meaning: "allow anonymous clients although -addr is not a loopback address, an embedded NATS port on a non-loopback address without authentication, and -metrics-addr off loopback without -admin-token",
			set: func(c *Config, v string) (err error) { c.Insecure, err = parseBool(v); return err }},
		{name: "fsync", def: "false", isBool: true, meaning: "embedded JetStream syncs every write to disk before acknowledging it (off: written to the OS before the ack, which survives a crash of rso but not of the machine; synced every 2 minutes)",
			set: func(c *Config, v string) (err error) { c.Fsync, err = parseBool(v); return err }},
		{name: "node-id", def: nodeID, defText: "HOSTNAME-RANDOM", meaning: "this node's unique name (letters, digits, '-', '_'); also the embedded NATS server name, so required with -nats-cluster",
			set: func(c *Config, v string) error { c.NodeID = v; return checkNodeID(v) }},
		{name: "resync-window", def: "1000", meaning: "versions a reconnecting client may lag behind and still get a delta instead of the full object",
			set: func(c *Config, v string) error {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil || n == 0 {
					return errors.New("want a positive whole number")
				}
				c.ResyncWindow = n
				return nil
			}},
		{name: "temp-grace", def: "5s", meaning: "how long a temporary object outlives its last subscriber",
			set: func(c *Config, v string) (err error) { c.TempGrace, err = positiveDuration(v); return err }},
		{name: "hook-timeout", def: "2s", meaning: "how long a change waits for a validation hook's answer",
			set: func(c *Config, v string) (err error) { c.HookTimeout, err = positiveDuration(v); return err }},
		{name: "replicas", def: "1", meaning: "JetStream replicas of the streams and buckets (more than 1 needs a JetStream cluster: -nats-cluster, or -nats with a clustered nats-server)",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 5 {
					return errors.New("want a whole number from 1 to 5")
				}
				c.Replicas = n
				return nil
			}},
		{name: "demos", def: "true", isBool: true, meaning: "serve the browser demos at /demos/ (with a token endpoint for demo/** when -token-secret is set) and run their validation hooks",
			set: func(c *Config, v string) (err error) { c.Demos, err = parseBool(v); return err }},
		{name: "relay-tcp", def: "", defText: "off", meaning: "HOST:PORT of the raw TCP relay for native clients (newline-delimited JSON, the /relay protocol); without -token-secret it must be a loopback address",
			set: func(c *Config, v string) error {
				c.RelayTCP = v
				if v == "" {
					return nil
				}
				return checkHostPort(v, 0)
			}},
		{name: "friends-only", def: "false", isBool: true, meaning: "private messages and signals only between friends (off: anyone not blocked)",
			set: func(c *Config, v string) (err error) { c.FriendsOnly, err = parseBool(v); return err }},
		{name: "presence-grace", def: "5s", meaning: "how long a user stays online after its last relay connection closed, so a reload does not flash offline",
			set: func(c *Config, v string) (err error) { c.PresenceGrace, err = positiveDuration(v); return err }},
		{name: "max-message-bytes", def: strconv.Itoa(pd.MaxMessageBytes), meaning: "largest private message body (compact JSON), in bytes",
			set: func(c *Config, v string) (err error) { c.MaxMessageBytes, err = positiveInt(v); return err }},
		{name: "relay-messages-per-second", def: strconv.FormatFloat(rl.MessagesPerSecond, 'f', -1, 64), meaning: "sustained private messages per second one relay connection may send (bursts of twice that)",
			set: func(c *Config, v string) (err error) {
				c.RelayLimits.MessagesPerSecond, err = positiveFloat(v)
				return err
			}},
		{name: "metrics-addr", def: "", defText: "off", meaning: "HOST:PORT serving Prometheus metrics at /metrics; a non-loopback address needs -admin-token (or -insecure)",
			set: func(c *Config, v string) error {
				c.MetricsAddr = v
				if v == "" {
					return nil
				}
				return checkHostPort(v, 0)
			}},
		{name: "admin-token", def: "", defText: "none", secret: true, meaning: "bearer token (at least 16 bytes) that /metrics requires in \"Authorization: Bearer …\"; it also turns on the admin API (/admin/api/ on -metrics-addr), which needs it (prefer the environment variable: flags show in ps)",
			set: func(c *Config, v string) error {
				c.AdminToken = nil
				if v == "" {
					return nil
				}
				if len(v) < minSecretBytes {
					return fmt.Errorf("too short (%d bytes); use at least %d random bytes, e.g. the output of: openssl rand -hex 32", len(v), minSecretBytes)
				}
				c.AdminToken = []byte(v)
				return nil
			}},
		{name: "debug-addr", def: "", defText: "off", meaning: "loopback HOST:PORT serving Go's profiler at /debug/pprof/ (for rso-bench and go tool pprof)",
			set: func(c *Config, v string) error {
				c.DebugAddr = v
				if v == "" {
					return nil
				}
				if err := checkHostPort(v, 0); err != nil {
					return err
				}
				if !isLoopback(v) {
					return errors.New("must be a loopback address (127.0.0.1:PORT): profiles show memory contents and cost CPU")
				}
				return nil
			}},
		{name: "log-level", def: "info", meaning: "least important log lines written: debug, info, warn or error",
			set: func(c *Config, v string) error {
				if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil || strings.ContainsAny(v, "+-") {
					return errors.New("want debug, info, warn or error")
				}
				return nil
			}},
		{name: "log-format", def: "text", meaning: "log lines as text (key=value) or json (one object per line)",
			set: func(c *Config, v string) error {
				switch v {
				case "text", "json":
					c.LogJSON = v == "json"
					return nil
				}
				return errors.New("want text or json")
			}},
		limit("max-frame-bytes", d.MaxFrameBytes, "largest frame a client may send, in bytes", func(l *sharedobject.Limits) *int { return &l.MaxFrameBytes }),
		limit("max-value-bytes", d.MaxValueBytes, "largest slot value, in bytes", func(l *sharedobject.Limits) *int { return &l.MaxValueBytes }),
		limit("max-slots", d.MaxSlots, "most slots in one object", func(l *sharedobject.Limits) *int { return &l.MaxSlots }),
		limit("max-object-bytes", d.MaxObjectBytes, "largest object (slot names plus values), in bytes", func(l *sharedobject.Limits) *int { return &l.MaxObjectBytes }),
		limit("max-changes", d.MaxChanges, "most slot changes in one update", func(l *sharedobject.Limits) *int { return &l.MaxChanges }),
		limit("max-subscriptions", d.MaxSubscriptions, "most objects one connection may subscribe to", func(l *sharedobject.Limits) *int { return &l.MaxSubscriptions }),
		limit("max-name-bytes", d.MaxNameBytes, "longest object, slot or handler name, in bytes", func(l *sharedobject.Limits) *int { return &l.MaxNameBytes }),
		{name: "frames-per-second", def: strconv.FormatFloat(d.FramesPerSecond, 'f', -1, 64), meaning: "sustained frames per second one connection may send (bursts of twice that)",
			set: func(c *Config, v string) (err error) { c.Limits.FramesPerSecond, err = positiveFloat(v); return err }},
		limit("outbound-bytes", d.OutboundBytes, "bytes queued for one slow connection before it is closed (4008)", func(l *sharedobject.Limits) *int { return &l.OutboundBytes }),
		limit("max-queued-writes", d.MaxQueuedWrites, "writes that may wait for one object on this node; more are answered busy", func(l *sharedobject.Limits) *int { return &l.MaxQueuedWrites }),
	}
}

const minSecretBytes = 16

// flagValue records what a flag was given; parsing happens later, once flag, environment and default
// have been weighed, so every value goes through the same checks and messages.
type flagValue struct {
	v      string
	set    bool
	isBool bool
}

func (f *flagValue) String() string     { return f.v }
func (f *flagValue) Set(s string) error { f.v, f.set = s, true; return nil }
func (f *flagValue) IsBoolFlag() bool   { return f.isBool }

// parseConfig reads args and the environment (through getenv) into a Config. A flag wins over its
// environment variable, which wins over the default; an empty variable counts as unset. Errors are one
// line naming the flag or variable and the value; -h returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string) (Config, error) {
	opts := options(defaultNodeID())
	fs := flag.NewFlagSet("rso", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	vals := make(map[string]*flagValue, len(opts))
	for _, o := range opts {
		v := &flagValue{isBool: o.isBool}
		vals[o.name] = v
		fs.Var(v, o.name, o.meaning)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, fmt.Errorf("%v (rso -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: rso takes only flags (rso -h lists them)", fs.Arg(0))
	}

	c := Config{from: make(map[string]string, len(opts))}
	for _, o := range opts {
		raw, from := o.def, "default"
		if ev := getenv(envName(o.name)); ev != "" {
			raw, from = ev, envName(o.name)
		}
		if fv := vals[o.name]; fv.set {
			raw, from = fv.v, "-"+o.name
		}
		c.from[o.name] = from
		if err := o.set(&c, raw); err != nil {
			return Config{}, fmt.Errorf("%s: %v", describe(o, from, raw), err)
		}
	}
	return c, c.check()
}

// describe names a value in an error: -max-slots "abc", RSO_MAX_SLOTS="abc", or just the name for secrets.
func describe(o option, from, raw string) string {
	if o.name == "nats" || o.name == "nats-routes" {
		raw = redact(raw)
	}
	switch {
	case o.secret:
		return from
	case from == "default":
		return fmt.Sprintf("default -%s %q", o.name, raw)
	case strings.HasPrefix(from, "RSO_"):
		return fmt.Sprintf("%s=%q", from, raw)
	default:
		return fmt.Sprintf("%s %q", from, raw)
	}
}

// check validates the combinations that no single value can.
func (c *Config) check() error {
	if c.NATS != "" && c.NATSListen != "" {
		return fmt.Errorf("%s and %s cannot be used together: %s uses an external NATS, %s opens the embedded one to other nodes; give one",
			c.label("nats"), c.label("nats-listen"), c.label("nats"), c.label("nats-listen"))
	}
	if err := c.checkCluster(); err != nil {
		return err
	}
	if err := c.checkNATSAuth(); err != nil {
		return err
	}
	if l := c.Limits; l.MaxValueBytes > l.MaxObjectBytes {
		return fmt.Errorf("%s (%d) is larger than %s (%d): a value has to fit in its object",
			c.label("max-value-bytes"), l.MaxValueBytes, c.label("max-object-bytes"), l.MaxObjectBytes)
	}
	if len(c.TokenSecret) == 0 && !c.Insecure && !isLoopback(c.Addr) {
		return fmt.Errorf("%s %q is not a loopback address and there is no -token-secret, so anyone who can reach it could read and change every object: set -token-secret (or RSO_TOKEN_SECRET), listen on 127.0.0.1, or add -insecure to allow it anyway",
			c.label("addr"), c.Addr)
	}
	if c.MetricsAddr != "" && len(c.AdminToken) == 0 && !c.Insecure && !isLoopback(c.MetricsAddr) {
		return fmt.Errorf("%s %q is not a loopback address and there is no -admin-token, so anyone who can reach it could read the server's numbers (the admin API is only served with a token): set -admin-token (or RSO_ADMIN_TOKEN), listen on 127.0.0.1, or add -insecure to allow it anyway",
			c.label("metrics-addr"), c.MetricsAddr)
	}
	if len(c.TokenSecret) == 0 && !c.Insecure && c.RelayTCP != "" && !isLoopback(c.RelayTCP) {
		return fmt.Errorf("%s %q is not a loopback address and there is no -token-secret, so anyone who can reach it could read every private chat: set -token-secret (or RSO_TOKEN_SECRET), listen on 127.0.0.1, or add -insecure to allow it anyway",
			c.label("relay-tcp"), c.RelayTCP)
	}
	return nil
}

// checkCluster validates the embedded cluster member's options and the replicas asked for.
func (c *Config) checkCluster() error {
	switch {
	case c.NATS != "" && c.NATSCluster != "":
		return fmt.Errorf("%s and %s cannot be used together: %s uses an external NATS, %s makes the embedded one a cluster member; give one",
			c.label("nats"), c.label("nats-cluster"), c.label("nats"), c.label("nats-cluster"))
	case c.NATSCluster != "" && len(c.NATSRoutes) == 0:
		return fmt.Errorf("%s needs -nats-routes: the %s addresses of the cluster's members, as nats://HOST:PORT,…",
			c.label("nats-cluster"), c.label("nats-cluster"))
	case c.NATSCluster == "" && len(c.NATSRoutes) > 0:
		return fmt.Errorf("%s needs -nats-cluster: the HOST:PORT where this node's embedded NATS accepts the other members",
			c.label("nats-routes"))
	case c.NATSCluster != "" && c.from["node-id"] == "default":
		return fmt.Errorf("%s needs -node-id: it names this member's NATS server, by which JetStream knows its peers, so it must stay the same across restarts (the default is random)",
			c.label("nats-cluster"))
	case c.Replicas > 1 && c.NATS == "" && c.NATSCluster == "":
		return fmt.Errorf("%s %d needs a JetStream cluster, but the embedded NATS is a single server: use %s 1, make it a cluster member with -nats-cluster and -nats-routes, or use -nats with a clustered nats-server",
			c.label("replicas"), c.Replicas, c.label("replicas"))
	case c.NATSCluster != "" && c.Replicas > c.clusterMembers():
		return fmt.Errorf("%s %d needs at least %d cluster members, but %s lists only %d (this node included)",
			c.label("replicas"), c.Replicas, c.Replicas, c.label("nats-routes"), c.clusterMembers())
	}
	return nil
}

// checkNATSAuth refuses an embedded NATS port that anyone who reaches it could use (it bypasses every
// token and hook: NATS is where the data is), and credentials that would silently do nothing.
func (c *Config) checkNATSAuth() error {
	a := &c.NATSAuth
	external := c.NATS != ""
	switch {
	case !external && (a.Creds != "" || a.NkeySeed != ""):
		name := "nats-creds"
		if a.Creds == "" {
			name = "nats-nkey"
		}
		return fmt.Errorf("%s is for an external NATS (-nats); the embedded one requires -nats-token on its ports", c.label(name))
	case (a.TLS.Cert == "") != (a.TLS.Key == ""):
		return fmt.Errorf("%s and %s go together: a certificate and its private key", c.label("nats-tls-cert"), c.label("nats-tls-key"))
	case !external && a.TLS.Set() && c.NATSListen == "" && c.NATSCluster == "":
		return fmt.Errorf("%s: the embedded NATS opens no port to serve TLS on; add -nats-listen or -nats-cluster, or drop the TLS settings", c.label(c.firstTLSSetting()))
	case !external && a.TLS.Set() && a.TLS.Cert == "":
		return fmt.Errorf("%s: TLS on the embedded NATS needs -nats-tls-cert and -nats-tls-key", c.label("nats-tls-ca"))
	case !external && c.NATSCluster != "" && a.TLS.Cert != "" && a.TLS.CA == "":
		return fmt.Errorf("%s with TLS needs -nats-tls-ca: the members verify each other's certificates against it", c.label("nats-cluster"))
	case external && a.Creds != "" && a.NkeySeed != "":
		return fmt.Errorf("%s and %s cannot be used together: a creds file holds its own nkey seed; give one", c.label("nats-creds"), c.label("nats-nkey"))
	case !external && a.TLS.CA != "" && c.NATSCluster == "":
		return fmt.Errorf("%s verifies the certificates of the other cluster members, and there is no -nats-cluster; the embedded NATS does not ask clients for certificates (they present -nats-token): drop it", c.label("nats-tls-ca"))
	case !external && a.Token != "" && len(a.Token) < minSecretBytes:
		return fmt.Errorf("%s is too short (%d bytes); use at least %d random bytes, e.g. the output of: openssl rand -hex 32", c.label("nats-token"), len(a.Token), minSecretBytes)
	case !external && strings.HasPrefix(a.Token, "$2"):
		// nats-server takes a password of this form for a bcrypt hash, and would refuse the token itself.
		return fmt.Errorf("%s starts with \"$2\", which NATS reads as a bcrypt hash; use a random token, e.g. the output of: openssl rand -hex 32", c.label("nats-token"))
	case c.Insecure:
		return nil
	case c.NATSListen != "" && !isLoopback(c.NATSListen) && a.Token == "":
		return fmt.Errorf("%s %q is not a loopback address and there is no -nats-token, so anyone who can reach it could read and change all data past every token and hook: set -nats-token (or RSO_NATS_TOKEN) on every node, listen on 127.0.0.1, or add -insecure to allow it anyway",
			c.label("nats-listen"), c.NATSListen)
	case c.NATSCluster != "" && !isLoopback(c.NATSCluster) && a.Token == "":
		// TLS alone is not enough: any certificate the CA ever signed would join, and a member's loopback
		// client port would be open to every local user.
		return fmt.Errorf("%s %q is not a loopback address and there is no -nats-token, so anyone who can reach it could join the cluster and read and change all data: set -nats-token (or RSO_NATS_TOKEN) on every member (and -nats-tls-cert, -nats-tls-key, -nats-tls-ca to encrypt the routes), or add -insecure to allow it anyway",
			c.label("nats-cluster"), c.NATSCluster)
	}
	return nil
}

// firstTLSSetting names a TLS setting that was given, for an error about all of them.
func (c *Config) firstTLSSetting() string {
	switch t := c.NATSAuth.TLS; {
	case t.Cert != "":
		return "nats-tls-cert"
	case t.Key != "":
		return "nats-tls-key"
	}
	return "nats-tls-ca"
}

// clusterMembers counts the members -nats-routes names, this node included whether it is listed or not.
// A member listed under two names counts twice: this is for a lower bound, not an exact count.
func (c *Config) clusterMembers() int {
	seen := map[string]bool{}
	for _, r := range c.NATSRoutes {
		if u, err := url.Parse(r); err == nil {
			seen[u.Host] = true
		}
	}
	if !seen[c.NATSCluster] {
		return len(seen) + 1
	}
	return len(seen)
}

// Anonymous reports whether clients may connect without a token.
func (c *Config) Anonymous() bool { return len(c.TokenSecret) == 0 }

// prepareDataDir creates the data folder and makes sure rso can write there. Only the embedded
// NATS uses it, so with -nats it is not touched.
func (c *Config) prepareDataDir() error {
	if c.NATS != "" {
		return nil
	}
	where := describe(option{name: "data"}, c.from["data"], c.DataDir)
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("%s: cannot create the folder: %s", where, pathReason(err))
	}
	f, err := os.CreateTemp(c.DataDir, ".rso-write-check-*")
	if err != nil {
		return fmt.Errorf("%s: cannot write in the folder: %s", where, pathReason(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

func pathReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func positiveInt(v string) (int, error) {
	n, err := strconv.ParseInt(v, 10, 32)
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
		return 0, fmt.Errorf("want a positive whole number up to %d", math.MaxInt32)
	}
	if err != nil || n < 1 {
		return 0, errors.New("want a positive whole number")
	}
	return int(n), nil
}

func positiveFloat(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return 0, errors.New("want a positive number")
	}
	return f, nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("want a positive duration such as 5s, 500ms or 1m")
	}
	return d, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("want true or false")
	}
	return b, nil
}

// checkHostPort accepts HOST:PORT with a port from minPort to 65535; an empty host means every interface.
// checkOptionalHostPort checks a listen address that may be left empty (the listener is then off).
func checkOptionalHostPort(v string) error {
	if v == "" {
		return nil
	}
	return checkHostPort(v, 1)
}

func checkHostPort(v string, minPort int) error {
	host, p, err := net.SplitHostPort(v)
	if err != nil {
		why := err.Error()
		var ae *net.AddrError
		if errors.As(err, &ae) {
			why = ae.Err
		}
		return fmt.Errorf("want HOST:PORT such as 127.0.0.1:8080 (%s)", why)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < minPort || port > 65535 {
		return fmt.Errorf("want HOST:PORT with a port from %d to 65535", minPort)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// isLoopback reports whether addr (HOST:PORT) listens on loopback only: 127.0.0.0/8, ::1 or localhost.
// An empty host or 0.0.0.0 means every interface, so it is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkNATSURLs(v string) error {
	if v == "" {
		return nil
	}
	list := strings.Split(v, ",")
	for _, raw := range list {
		raw = strings.TrimSpace(raw)
		in := "" // with several URLs, say which one is wrong
		if len(list) > 1 {
			in = fmt.Sprintf(" in %q", redact(raw))
		}
		if raw == "" {
			return errors.New("empty URL in the list; separate URLs with single commas")
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return fmt.Errorf("want nats://HOST:PORT (or tls://, ws://, wss://)%s", in)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("scheme %q%s is not one NATS speaks; want nats://, tls://, ws:// or wss://", u.Scheme, in)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("port %q%s: want a number from 1 to 65535", p, in)
			}
		}
	}
	return nil
}

// parseRoutes reads a comma-separated list of nats://HOST:PORT route URLs.
func parseRoutes(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	list := strings.Split(v, ",")
	routes := make([]string, 0, len(list))
	for _, raw := range list {
		raw = strings.TrimSpace(raw)
		in := "" // with several URLs, say which one is wrong
		if len(list) > 1 {
			in = fmt.Sprintf(" in %q", redact(raw))
		}
		if raw == "" {
			return nil, errors.New("empty URL in the list; separate URLs with single commas")
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "nats" || u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("want nats://HOST:PORT%s", in)
		}
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q%s: want a number from 1 to 65535", u.Port(), in)
		}
		routes = append(routes, raw)
	}
	return routes, nil
}

// redact hides the user part (user, password or token) of each URL in a comma-separated list.
func redact(urls string) string {
	list := strings.Split(urls, ",")
	for i, raw := range list {
		scheme, rest, ok := strings.Cut(raw, "://")
		if !ok {
			continue
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			list[i] = scheme + "://xxxxx@" + rest[at+1:]
		}
	}
	return strings.Join(list, ",")
}

func checkNodeID(v string) error {
	if !ids.Valid(v, 64) {
		return errors.New("want 1 to 64 letters, digits, '-' or '_'")
	}
	return nil
}

// defaultNodeID is the host name (made safe for a node id) plus random hex, so two processes on one
// machine differ and the name still says where a node runs.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "rso"
	}
	host, _, _ = strings.Cut(host, ".")
	b := []byte(host)
	for i, r := range b {
		if !ids.IsRune(rune(r)) {
			b[i] = '-'
		}
	}
	if len(b) > 48 {
		b = b[:48]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read does not fail
	return string(b) + "-" + hex.EncodeToString(rnd[:])
}

// printUsage writes the -h text: every flag with its variable, default and meaning.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: rso [flags]

Serves remote shared objects over WebSocket (/so) on an embedded NATS with JetStream (optionally one
member of a NATS cluster: -nats-cluster, -nats-routes), or on an external NATS with -nats.
GET /healthz answers 200 "ok" when the node is ready.

Every flag can also be set in the environment; a flag wins over its variable, a variable over the
default. An empty variable counts as unset.

`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FLAG\tVARIABLE\tDEFAULT\tMEANING")
	for _, o := range options("") {
		def := o.def
		if o.defText != "" {
			def = o.defText
		}
		fmt.Fprintf(tw, "  -%s\t%s\t%s\t%s\n", o.name, envName(o.name), def, o.meaning)
	}
	tw.Flush()
}
