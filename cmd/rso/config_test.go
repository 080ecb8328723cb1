package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/p2p/messaging"
	"github.com/rso-server/rso/relay"
	"github.com/rso-server/rso/sharedobject"
)

// env is a fake environment for parseConfig.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func TestDefaults(t *testing.T) {
	c, err := parseConfig(nil, env{}.get)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./data" || c.NATS != "" || c.NATSListen != "" ||
		c.NATSCluster != "" || c.NATSRoutes != nil || c.NATSClusterName != "rso" || c.StartupTimeout != 60*time.Second ||
		c.TokenSecret != nil || c.Insecure || c.Fsync || c.ResyncWindow != 1000 || c.TempGrace != 5*time.Second ||
		c.HookTimeout != 2*time.Second || c.Replicas != 1 || !c.Demos || c.RelayTCP != "" || c.FriendsOnly ||
		c.PresenceGrace != 5*time.Second || c.MaxMessageBytes != messaging.DefaultConfig().MaxMessageBytes ||
		c.RelayLimits.MessagesPerSecond != relay.DefaultLimits().MessagesPerSecond {
		t.Errorf("defaults: %+v", c)
	}
	if c.Limits != sharedobject.DefaultLimits() {
		t.Errorf("limits %+v, want %+v", c.Limits, sharedobject.DefaultLimits())
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+-[0-9a-f]{8}$`).MatchString(c.NodeID) {
		t.Errorf("default node id %q is not HOSTNAME-RANDOM", c.NodeID)
	}
	if other, _ := parseConfig(nil, env{}.get); other.NodeID == c.NodeID {
		t.Errorf("two processes got the same default node id %q", c.NodeID)
	}
}

func TestEveryOptionHasFlagAndEnv(t *testing.T) {
	// Each option, set through the environment and then overridden by its flag.
	values := map[string][2]string{ // name → {env value, flag value}
		"addr":                      {"127.0.0.1:1", "127.0.0.1:2"},
		"data":                      {"/env", "/flag"},
		"nats":                      {"nats://env:4222", "nats://flag:4222"},
		"nats-listen":               {"127.0.0.1:4223", "127.0.0.1:4224"},
		"nats-cluster":              {"127.0.0.1:6223", "127.0.0.1:6224"},
		"nats-routes":               {"nats://a:6222", "nats://a:6222,nats://b:6222"},
		"nats-cluster-name":         {"env", "flag"},
		"startup-timeout":           {"10s", "20s"},
		"nats-token":                {"env-token-0123456789", "flag-token-0123456789"},
		"nats-creds":                {"env.creds", "flag.creds"},
		"nats-nkey":                 {"env.nk", "flag.nk"},
		"nats-tls-cert":             {"env.pem", "flag.pem"},
		"nats-tls-key":              {"env-key.pem", "flag-key.pem"},
		"nats-tls-ca":               {"env-ca.pem", "flag-ca.pem"},
		"token-secret":              {"env-secret-0123456789", "flag-secret-0123456789"},
		"insecure":                  {"true", "false"}, // a bool has two values: flag = default here
		"fsync":                     {"true", "false"},
		"demos":                     {"false", "true"}, // on by default
		"node-id":                   {"env", "flag"},
		"resync-window":             {"10", "20"},
		"temp-grace":                {"1s", "2s"},
		"hook-timeout":              {"3s", "4s"},
		"replicas":                  {"2", "3"},
		"max-frame-bytes":           {"1001", "1002"},
		"max-value-bytes":           {"1003", "1004"},
		"max-slots":                 {"1005", "1006"},
		"max-object-bytes":          {"100007", "100008"},
		"max-changes":               {"1009", "1010"},
		"max-subscriptions":         {"1011", "1012"},
		"max-name-bytes":            {"1013", "1014"},
		"frames-per-second":         {"1.5", "2.5"},
		"outbound-bytes":            {"1015", "1016"},
		"max-queued-writes":         {"1019", "1020"},
		"relay-tcp":                 {"127.0.0.1:7001", "127.0.0.1:7002"},
		"friends-only":              {"true", "false"},
		"presence-grace":            {"1s", "2s"},
		"max-message-bytes":         {"1017", "1018"},
		"relay-messages-per-second": {"3.5", "4.5"},
		"metrics-addr":              {"127.0.0.1:9001", "127.0.0.1:9002"},
		"admin-token":               {"env-admin-0123456789", "flag-admin-0123456789"},
		"debug-addr":                {"127.0.0.1:6001", "127.0.0.1:6002"},
		"log-level":                 {"warn", "error"},
		"log-format":                {"json", "text"},
	}
	opts := options("x")
	if len(opts) != len(values) {
		t.Fatalf("%d options, %d in this test: keep them in step", len(opts), len(values))
	}
	for _, o := range opts {
		v, ok := values[o.name]
		if !ok {
			t.Fatalf("option %s is missing from this test", o.name)
		}
		// -nats and -nats-listen exclude each other; replicas > 1 needs -nats; -nats-cluster and
		// -nats-routes need each other (so the default of one cannot go with the other) and -node-id.
		base, defBase := env{}, env{}
		switch o.name {
		case "replicas", "nats-creds", "nats-nkey", "nats-tls-ca":
			base["RSO_NATS"] = "nats://x:4222"
			defBase = base
		case "nats-tls-cert":
			base = env{"RSO_NATS": "nats://x:4222", "RSO_NATS_TLS_KEY": "k.pem"}
			defBase = env{"RSO_NATS": "nats://x:4222"}
		case "nats-tls-key":
			base = env{"RSO_NATS": "nats://x:4222", "RSO_NATS_TLS_CERT": "c.pem"}
			defBase = env{"RSO_NATS": "nats://x:4222"}
		case "nats-cluster":
			base = env{"RSO_NATS_ROUTES": "nats://a:6222", "RSO_NODE_ID": "n1"}
		case "nats-routes":
			base = env{"RSO_NATS_CLUSTER": "127.0.0.1:6222", "RSO_NODE_ID": "n1"}
		}
		fromEnv := env{envName(o.name): v[0]}
		for k, bv := range base {
			fromEnv[k] = bv
		}
		cEnv, err := parseConfig(nil, fromEnv.get)
		if err != nil {
			t.Fatalf("%s from env: %v", o.name, err)
		}
		cFlag, err := parseConfig([]string{"-" + o.name + "=" + v[1]}, fromEnv.get)
		if err != nil {
			t.Fatalf("%s from flag: %v", o.name, err)
		}
		cDef, err := parseConfig(nil, defBase.get)
		if err != nil {
			t.Fatalf("%s default: %v", o.name, err)
		}
		if cEnv.from[o.name] != envName(o.name) || cFlag.from[o.name] != "-"+o.name || cDef.from[o.name] != "default" {
			t.Errorf("%s: sources %q %q %q", o.name, cEnv.from[o.name], cFlag.from[o.name], cDef.from[o.name])
		}
		twoValues := o.isBool || o.name == "log-format" // the flag can only repeat the default
		if eq(cEnv, cFlag) || eq(cEnv, cDef) || (!twoValues && eq(cFlag, cDef)) {
			t.Errorf("%s: flag, env and default do not give three different configs", o.name)
		}
	}
}

// eq compares configs without their source maps.
func eq(a, b Config) bool {
	a.from, b.from = nil, nil
	a.NodeID, b.NodeID = stripRandom(a.NodeID), stripRandom(b.NodeID)
	return reflect.DeepEqual(a, b)
}

func stripRandom(id string) string {
	return regexp.MustCompile(`-[0-9a-f]{8}$`).ReplaceAllString(id, "")
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  env
		want string // Addr
	}{
		{"default", nil, env{}, "127.0.0.1:8080"},
		{"env over default", nil, env{"RSO_ADDR": "127.0.0.1:1"}, "127.0.0.1:1"},
		{"flag over env", []string{"-addr", "127.0.0.1:2"}, env{"RSO_ADDR": "127.0.0.1:1"}, "127.0.0.1:2"},
		{"empty env is unset", nil, env{"RSO_ADDR": ""}, "127.0.0.1:8080"},
		{"last flag wins", []string{"-addr", "127.0.0.1:2", "-addr=127.0.0.1:3"}, env{}, "127.0.0.1:3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, tt.env.get)
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tt.want {
				t.Errorf("Addr = %q, want %q", c.Addr, tt.want)
			}
		})
	}

	// A good flag repairs a bad environment value: the environment is not even parsed.
	if _, err := parseConfig([]string{"-max-slots", "5"}, env{"RSO_MAX_SLOTS": "abc"}.get); err != nil {
		t.Errorf("flag did not win over a bad env value: %v", err)
	}
	// Bool flags work bare and with a value; env takes any strconv.ParseBool spelling.
	for _, tc := range []struct {
		args []string
		env  env
		want bool
	}{
		{[]string{"-fsync"}, env{}, true},
		{[]string{"-fsync=false"}, env{"RSO_FSYNC": "1"}, false},
		{nil, env{"RSO_FSYNC": "TRUE"}, true},
		{nil, env{"RSO_FSYNC": "0"}, false},
	} {
		c, err := parseConfig(tc.args, tc.env.get)
		if err != nil || c.Fsync != tc.want {
			t.Errorf("%v %v: Fsync = %v, %v; want %v", tc.args, tc.env, c.Fsync, err, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  env
		want string
	}{
		// one per kind of value
		{[]string{"-max-slots", "abc"}, nil, `-max-slots "abc": want a positive whole number`},
		{nil, env{"RSO_MAX_SLOTS": "abc"}, `RSO_MAX_SLOTS="abc": want a positive whole number`},
		{[]string{"-max-slots", "0"}, nil, `-max-slots "0": want a positive whole number`},
		{[]string{"-max-slots", "-3"}, nil, `-max-slots "-3": want a positive whole number`},
		{[]string{"-max-slots", "1.5"}, nil, `-max-slots "1.5": want a positive whole number`},
		{[]string{"-outbound-bytes", "99999999999"}, nil, `-outbound-bytes "99999999999": want a positive whole number up to 2147483647`},
		{[]string{"-max-frame-bytes", ""}, nil, `-max-frame-bytes "": want a positive whole number`},
		{[]string{"-max-value-bytes", "x"}, nil, `-max-value-bytes "x": want a positive whole number`},
		{[]string{"-max-object-bytes", "x"}, nil, `-max-object-bytes "x": want a positive whole number`},
		{[]string{"-max-changes", "x"}, nil, `-max-changes "x": want a positive whole number`},
		{[]string{"-max-subscriptions", "x"}, nil, `-max-subscriptions "x": want a positive whole number`},
		{[]string{"-max-name-bytes", "x"}, nil, `-max-name-bytes "x": want a positive whole number`},
		{[]string{"-frames-per-second", "0"}, nil, `-frames-per-second "0": want a positive number`},
		{[]string{"-frames-per-second", "NaN"}, nil, `-frames-per-second "NaN": want a positive number`},
		{[]string{"-frames-per-second", "+Inf"}, nil, `-frames-per-second "+Inf": want a positive number`},
		{[]string{"-resync-window", "0"}, nil, `-resync-window "0": want a positive whole number`},
		{nil, env{"RSO_TEMP_GRACE": "5"}, `RSO_TEMP_GRACE="5": want a positive duration such as 5s, 500ms or 1m`},
		{[]string{"-hook-timeout", "-1s"}, nil, `-hook-timeout "-1s": want a positive duration such as 5s, 500ms or 1m`},
		{[]string{"-replicas", "7"}, nil, `-replicas "7": want a whole number from 1 to 5`},
		{[]string{"-insecure=maybe"}, nil, `-insecure "maybe": want true or false`},
		{nil, env{"RSO_FSYNC": "yes please"}, `RSO_FSYNC="yes please": want true or false`},
		{[]string{"-node-id", "a.b"}, nil, `-node-id "a.b": want 1 to 64 letters, digits, '-' or '_'`},
		{[]string{"-node-id", ""}, nil, `-node-id "": want 1 to 64 letters, digits, '-' or '_'`},
		{[]string{"-node-id", strings.Repeat("n", 65)}, nil, `-node-id "` + strings.Repeat("n", 65) + `": want 1 to 64 letters, digits, '-' or '_'`},
		{[]string{"-data", " "}, nil, `-data " ": want a folder path`},
		// addresses
		{nil, env{"RSO_ADDR": "8080"}, `RSO_ADDR="8080": want HOST:PORT such as 127.0.0.1:8080 (missing port in address)`},
		{[]string{"-addr", "127.0.0.1:http"}, nil, `-addr "127.0.0.1:http": want HOST:PORT with a port from 0 to 65535`},
		{[]string{"-addr", "127.0.0.1:70000"}, nil, `-addr "127.0.0.1:70000": want HOST:PORT with a port from 0 to 65535`},
		{[]string{"-addr", "bad host:80"}, nil, `-addr "bad host:80": "bad host" is neither an IP address nor a host name`},
		{[]string{"-nats-listen", "127.0.0.1:0"}, nil, `-nats-listen "127.0.0.1:0": want HOST:PORT with a port from 1 to 65535`},
		{[]string{"-nats-listen", "4222"}, nil, `-nats-listen "4222": want HOST:PORT such as 127.0.0.1:8080 (missing port in address)`},
		{[]string{"-nats", "localhost:4222"}, nil, `-nats "localhost:4222": want nats://HOST:PORT (or tls://, ws://, wss://)`},
		{[]string{"-nats", "http://localhost:4222"}, nil, `-nats "http://localhost:4222": scheme "http" is not one NATS speaks; want nats://, tls://, ws:// or wss://`},
		{[]string{"-nats", "nats://a:4222,http://b"}, nil, `-nats "nats://a:4222,http://b": scheme "http" in "http://b" is not one NATS speaks; want nats://, tls://, ws:// or wss://`},
		{[]string{"-nats", "nats://a:4222,,nats://b"}, nil, `-nats "nats://a:4222,,nats://b": empty URL in the list; separate URLs with single commas`},
		{[]string{"-nats", "nats://a:99999"}, nil, `-nats "nats://a:99999": port "99999": want a number from 1 to 65535`},
		{[]string{"-nats", "nats://u:hunter2@a:x"}, nil, `-nats "nats://xxxxx@a:x": want nats://HOST:PORT (or tls://, ws://, wss://)`},
		{[]string{"-token-secret", "short"}, nil, `-token-secret: too short (5 bytes); use at least 16 random bytes, e.g. the output of: openssl rand -hex 32`},
		{nil, env{"RSO_TOKEN_SECRET": "short"}, `RSO_TOKEN_SECRET: too short (5 bytes); use at least 16 random bytes, e.g. the output of: openssl rand -hex 32`},
		// combinations
		{[]string{"-nats", "nats://a:4222", "-nats-listen", "127.0.0.1:4222"}, nil,
			`-nats and -nats-listen cannot be used together: -nats uses an external NATS, -nats-listen opens the embedded one to other nodes; give one`},
		{[]string{"-nats-listen", "127.0.0.1:4222"}, env{"RSO_NATS": "nats://a:4222"},
			`RSO_NATS and -nats-listen cannot be used together: RSO_NATS uses an external NATS, -nats-listen opens the embedded one to other nodes; give one`},
		{[]string{"-replicas", "3"}, nil, `-replicas 3 needs a JetStream cluster, but the embedded NATS is a single server: use -replicas 1, make it a cluster member with -nats-cluster and -nats-routes, or use -nats with a clustered nats-server`},
		// the embedded cluster
		{[]string{"-nats-cluster", "6222"}, nil, `-nats-cluster "6222": want HOST:PORT such as 127.0.0.1:8080 (missing port in address)`},
		{[]string{"-nats-cluster", "127.0.0.1:0"}, nil, `-nats-cluster "127.0.0.1:0": want HOST:PORT with a port from 1 to 65535`},
		{[]string{"-nats-routes", "a:6222"}, nil, `-nats-routes "a:6222": want nats://HOST:PORT`},
		{[]string{"-nats-routes", "nats://a"}, nil, `-nats-routes "nats://a": want nats://HOST:PORT`},
		{[]string{"-nats-routes", "tls://a:6222"}, nil, `-nats-routes "tls://a:6222": want nats://HOST:PORT`},
		{[]string{"-nats-routes", "nats://a:6222,nats://b:x"}, nil, `-nats-routes "nats://a:6222,nats://b:x": want nats://HOST:PORT in "nats://b:x"`},
		{[]string{"-nats-routes", "nats://a:6222,nats://b:70000"}, nil, `-nats-routes "nats://a:6222,nats://b:70000": port "70000" in "nats://b:70000": want a number from 1 to 65535`},
		{[]string{"-nats-routes", "nats://a:6222,"}, nil, `-nats-routes "nats://a:6222,": empty URL in the list; separate URLs with single commas`},
		{[]string{"-nats-routes", "nats://u:hunter2@a:x"}, nil, `-nats-routes "nats://xxxxx@a:x": want nats://HOST:PORT`},
		{nil, env{"RSO_NATS_CLUSTER_NAME": "my cluster"}, `RSO_NATS_CLUSTER_NAME="my cluster": want 1 to 64 letters, digits, '-' or '_'`},
		{[]string{"-startup-timeout", "0s"}, nil, `-startup-timeout "0s": want a positive duration such as 5s, 500ms or 1m`},
		{[]string{"-nats-cluster", "127.0.0.1:6222", "-node-id", "n1"}, nil,
			`-nats-cluster needs -nats-routes: the -nats-cluster addresses of the cluster's members, as nats://HOST:PORT,…`},
		{[]string{"-nats-routes", "nats://127.0.0.1:6222"}, nil,
			`-nats-routes needs -nats-cluster: the HOST:PORT where this node's embedded NATS accepts the other members`},
		{[]string{"-nats-cluster", "127.0.0.1:6222", "-nats-routes", "nats://127.0.0.1:6223"}, nil,
			`-nats-cluster needs -node-id: it names this member's NATS server, by which JetStream knows its peers, so it must stay the same across restarts (the default is random)`},
		{[]string{"-nats", "nats://a:4222", "-nats-cluster", "127.0.0.1:6222", "-nats-routes", "nats://b:6222", "-node-id", "n1"}, nil,
			`-nats and -nats-cluster cannot be used together: -nats uses an external NATS, -nats-cluster makes the embedded one a cluster member; give one`},
		{[]string{"-nats-cluster", "127.0.0.1:6222", "-nats-routes", "nats://127.0.0.1:6222,nats://127.0.0.1:6223", "-node-id", "n1", "-replicas", "3"}, nil,
			`-replicas 3 needs at least 3 cluster members, but -nats-routes lists only 2 (this node included)`},
		// NATS authentication and TLS
		{[]string{"-nats-listen", "0.0.0.0:4222"}, nil,
			`-nats-listen "0.0.0.0:4222" is not a loopback address and there is no -nats-token, so anyone who can reach it could read and change all data past every token and hook: set -nats-token (or RSO_NATS_TOKEN) on every node, listen on 127.0.0.1, or add -insecure to allow it anyway`},
		{[]string{"-nats-cluster", "10.0.0.1:6222", "-nats-routes", "nats://10.0.0.2:6222", "-node-id", "n1"}, nil,
			`-nats-cluster "10.0.0.1:6222" is not a loopback address and there is no -nats-token, so anyone who can reach it could join the cluster and read and change all data: set -nats-token (or RSO_NATS_TOKEN) on every member (and -nats-tls-cert, -nats-tls-key, -nats-tls-ca to encrypt the routes), or add -insecure to allow it anyway`},
		{[]string{"-nats-cluster", "10.0.0.1:6222", "-nats-routes", "nats://10.0.0.2:6222", "-node-id", "n1", "-nats-tls-cert", "c.pem", "-nats-tls-key", "k.pem", "-nats-tls-ca", "ca.pem"}, nil,
			`-nats-cluster "10.0.0.1:6222" is not a loopback address and there is no -nats-token, so anyone who can reach it could join the cluster and read and change all data: set -nats-token (or RSO_NATS_TOKEN) on every member (and -nats-tls-cert, -nats-tls-key, -nats-tls-ca to encrypt the routes), or add -insecure to allow it anyway`},
		{[]string{"-nats-listen", "127.0.0.1:4222"}, env{"RSO_NATS_TOKEN": "$2a$11$abcdefghijklmnopqrstuv"},
			`RSO_NATS_TOKEN starts with "$2", which NATS reads as a bcrypt hash; use a random token, e.g. the output of: openssl rand -hex 32`},
		{[]string{"-nats", "nats://a:4222", "-nats-creds", "u.creds", "-nats-nkey", "u.nk"}, nil,
			`-nats-creds and -nats-nkey cannot be used together: a creds file holds its own nkey seed; give one`},
		{[]string{"-nats-listen", "127.0.0.1:4222", "-nats-tls-cert", "c.pem", "-nats-tls-key", "k.pem", "-nats-tls-ca", "ca.pem"}, nil,
			`-nats-tls-ca verifies the certificates of the other cluster members, and there is no -nats-cluster; the embedded NATS does not ask clients for certificates (they present -nats-token): drop it`},
		{[]string{"-nats-listen", "127.0.0.1:4222"}, env{"RSO_NATS_TOKEN": "short"},
			`RSO_NATS_TOKEN is too short (5 bytes); use at least 16 random bytes, e.g. the output of: openssl rand -hex 32`},
		{[]string{"-nats-creds", "user.creds"}, nil, `-nats-creds is for an external NATS (-nats); the embedded one requires -nats-token on its ports`},
		{[]string{"-nats-nkey", "user.nk"}, nil, `-nats-nkey is for an external NATS (-nats); the embedded one requires -nats-token on its ports`},
		{[]string{"-nats", "tls://a:4222", "-nats-tls-cert", "c.pem"}, nil, `-nats-tls-cert and -nats-tls-key go together: a certificate and its private key`},
		{[]string{"-nats-tls-ca", "ca.pem"}, nil, `-nats-tls-ca: the embedded NATS opens no port to serve TLS on; add -nats-listen or -nats-cluster, or drop the TLS settings`},
		{[]string{"-nats-listen", "127.0.0.1:4222", "-nats-tls-ca", "ca.pem"}, nil, `-nats-tls-ca: TLS on the embedded NATS needs -nats-tls-cert and -nats-tls-key`},
		{[]string{"-nats-cluster", "127.0.0.1:6222", "-nats-routes", "nats://127.0.0.1:6223", "-node-id", "n1", "-nats-tls-cert", "c.pem", "-nats-tls-key", "k.pem"}, nil,
			`-nats-cluster with TLS needs -nats-tls-ca: the members verify each other's certificates against it`},
		{[]string{"-max-value-bytes", "2000", "-max-object-bytes", "1000"}, nil,
			`-max-value-bytes (2000) is larger than -max-object-bytes (1000): a value has to fit in its object`},
		// the command line itself
		{[]string{"-nope"}, nil, `flag provided but not defined: -nope (rso -h lists the flags)`},
		{[]string{"-addr"}, nil, `flag needs an argument: -addr (rso -h lists the flags)`},
		{[]string{"serve"}, nil, `unexpected argument "serve": rso takes only flags (rso -h lists them)`},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, tt.env.get)
		if err == nil {
			t.Errorf("%v %v: no error, want %q", tt.args, tt.env, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%v %v:\n got %q\nwant %q", tt.args, tt.env, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error spans lines", tt.args)
		}
		if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "u:") {
			t.Errorf("%v: error shows a password: %q", tt.args, err)
		}
	}
}

// A cluster member: the same routes on every member (itself included, or not), replicas up to the members.
func TestClusterConfig(t *testing.T) {
	routes := "nats://127.0.0.1:6221, nats://127.0.0.1:6222,nats://127.0.0.1:6223"
	c, err := parseConfig([]string{"-nats-cluster", "127.0.0.1:6222", "-node-id", "n2", "-replicas", "3"},
		env{"RSO_NATS_ROUTES": routes, "RSO_NATS_CLUSTER_NAME": "prod", "RSO_NATS_LISTEN": "127.0.0.1:4222"}.get)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nats://127.0.0.1:6221", "nats://127.0.0.1:6222", "nats://127.0.0.1:6223"}
	if c.NATSCluster != "127.0.0.1:6222" || !reflect.DeepEqual(c.NATSRoutes, want) || c.NATSClusterName != "prod" ||
		c.NodeID != "n2" || c.Replicas != 3 || c.NATSListen != "127.0.0.1:4222" {
		t.Errorf("config %+v", c)
	}
	// Listing only the others counts this node too.
	if _, err := parseConfig([]string{"-nats-cluster", "127.0.0.1:6221", "-node-id", "n1", "-replicas", "3",
		"-nats-routes", "nats://127.0.0.1:6222,nats://127.0.0.1:6223"}, env{}.get); err != nil {
		t.Errorf("routes to the two others, -replicas 3: %v", err)
	}
}

// A NATS port off loopback opens with authentication (or -insecure); on loopback it needs none.
func TestNATSAuthConfig(t *testing.T) {
	const token = "0123456789abcdef0123"
	routes := []string{"-nats-routes", "nats://10.0.0.2:6222", "-node-id", "n1"}
	for _, tt := range []struct {
		args []string
		env  env
	}{
		{[]string{"-nats-listen", "127.0.0.1:4222"}, nil},
		{[]string{"-nats-listen", "0.0.0.0:4222"}, env{"RSO_NATS_TOKEN": token}},
		{[]string{"-nats-listen", "0.0.0.0:4222", "-insecure"}, nil},
		{append([]string{"-nats-cluster", "10.0.0.1:6222"}, routes...), env{"RSO_NATS_TOKEN": token}},
		{append([]string{"-nats-cluster", "10.0.0.1:6222", "-nats-tls-cert", "c.pem", "-nats-tls-key", "k.pem", "-nats-tls-ca", "ca.pem"}, routes...), env{"RSO_NATS_TOKEN": token}},
		{append([]string{"-nats-cluster", "10.0.0.1:6222", "-insecure"}, routes...), nil},
		{[]string{"-nats", "tls://a:4222", "-nats-creds", "u.creds", "-nats-tls-ca", "ca.pem"}, env{"RSO_NATS_TOKEN": "short is fine for an external server"}},
	} {
		c, err := parseConfig(tt.args, tt.env.get)
		if err != nil {
			t.Errorf("%v %v: %v", tt.args, tt.env, err)
			continue
		}
		if c.NATSAuth.Token != tt.env["RSO_NATS_TOKEN"] {
			t.Errorf("%v: token %q not taken from the environment", tt.args, c.NATSAuth.Token)
		}
	}
}

func TestSecretNeverEchoed(t *testing.T) {
	_, err := parseConfig([]string{"-token-secret", "s3cr3t"}, env{}.get)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %v echoes the secret", err)
	}
}

func TestLoopbackRule(t *testing.T) {
	const secret = "0123456789abcdef0123"
	tests := []struct {
		addr     string
		secret   string
		insecure bool
		ok       bool
	}{
		{"127.0.0.1:8080", "", false, true},
		{"127.1.2.3:8080", "", false, true},
		{"[::1]:8080", "", false, true},
		{"localhost:8080", "", false, true},
		{"LOCALHOST:8080", "", false, true},
		{"0.0.0.0:8080", "", false, false},
		{":8080", "", false, false},
		{"[::]:8080", "", false, false},
		{"192.168.1.10:8080", "", false, false},
		{"localhost.example.com:8080", "", false, false},
		{"example.com:8080", "", false, false},
		{"0.0.0.0:8080", secret, false, true},
		{"0.0.0.0:8080", "", true, true},
		{":8080", secret, true, true},
	}
	for _, tt := range tests {
		args := []string{"-addr", tt.addr}
		if tt.secret != "" {
			args = append(args, "-token-secret", tt.secret)
		}
		if tt.insecure {
			args = append(args, "-insecure")
		}
		c, err := parseConfig(args, env{}.get)
		if tt.ok != (err == nil) {
			t.Errorf("%v: error %v, want ok=%v", args, err, tt.ok)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), "-token-secret") && !strings.Contains(err.Error(), "-insecure") {
			t.Errorf("%v: %q does not say how to fix it", args, err)
		}
		if err == nil && c.Anonymous() != (tt.secret == "") {
			t.Errorf("%v: Anonymous() = %v", args, c.Anonymous())
		}
	}
}

func TestPrepareDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	c, err := parseConfig([]string{"-data", dir}, env{}.get)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.prepareDataDir(); err != nil {
		t.Fatalf("prepareDataDir: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("folder not created: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left files behind: %v", entries)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ = parseConfig(nil, env{"RSO_DATA": filepath.Join(file, "sub")}.get)
	want := `RSO_DATA="` + filepath.Join(file, "sub") + `": cannot create the folder: not a directory`
	if err := c.prepareDataDir(); err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	// With -nats the data folder is not used, so it is not touched.
	c, _ = parseConfig([]string{"-nats", "nats://x:4222", "-data", filepath.Join(file, "sub")}, env{}.get)
	if err := c.prepareDataDir(); err != nil {
		t.Errorf("with -nats: %v", err)
	}
}

func TestHelp(t *testing.T) {
	_, err := parseConfig([]string{"-h"}, env{}.get)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-help"}, env{}.get, &out); code != 0 {
		t.Errorf("-help exits %d", code)
	}
	for _, o := range options("") {
		if !strings.Contains(out.String(), "-"+o.name+" ") || !strings.Contains(out.String(), envName(o.name)) {
			t.Errorf("usage lacks -%s or %s", o.name, envName(o.name))
		}
	}
}

func TestRunUsageErrorIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  env
	}{
		{[]string{"-max-slots", "abc"}, env{}},
		{nil, env{"RSO_ADDR": "nope"}},
		{[]string{"-addr", "0.0.0.0:1"}, env{}},
	} {
		var out bytes.Buffer
		code := run(context.Background(), tc.args, tc.env.get, &out)
		if code != 2 {
			t.Errorf("%v %v: exit %d, want 2", tc.args, tc.env, code)
		}
		if s := out.String(); strings.Count(s, "\n") != 1 || !strings.HasPrefix(s, "rso: ") {
			t.Errorf("%v %v: output %q, want one line starting with rso:", tc.args, tc.env, s)
		}
	}
}

func TestRelayTCPLoopbackRule(t *testing.T) {
	if _, err := parseConfig([]string{"-relay-tcp", "127.0.0.1:7000"}, env{}.get); err != nil {
		t.Errorf("loopback TCP relay without a secret refused: %v", err)
	}
	_, err := parseConfig([]string{"-relay-tcp", "0.0.0.0:7000"}, env{}.get)
	if err == nil || !strings.Contains(err.Error(), "-relay-tcp") || !strings.Contains(err.Error(), "-token-secret") {
		t.Errorf("open TCP relay without a secret: %v, want a refusal naming -relay-tcp and -token-secret", err)
	}
	if _, err := parseConfig([]string{"-relay-tcp", "0.0.0.0:7000", "-token-secret", "0123456789abcdef0123"}, env{}.get); err != nil {
		t.Errorf("open TCP relay with a secret refused: %v", err)
	}
	if _, err := parseConfig([]string{"-relay-tcp", "nonsense"}, env{}.get); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("-relay-tcp nonsense: %v, want a HOST:PORT hint", err)
	}
}

// The operator's listeners: metrics off a loopback address only with a token (or -insecure), the profiler
// on loopback only, log level and format checked.
func TestOperatorOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		e    env
		want string // part of the error; "" = accepted
	}{
		{[]string{"-metrics-addr", "127.0.0.1:9090"}, env{}, ""},
		{[]string{"-metrics-addr", "0.0.0.0:9090"}, env{}, "no -admin-token"},
		{[]string{"-metrics-addr", "0.0.0.0:9090"}, env{"RSO_ADMIN_TOKEN": "0123456789abcdef"}, ""},
		{[]string{"-metrics-addr", "0.0.0.0:9090", "-insecure"}, env{}, ""},
		{[]string{"-admin-token", "short"}, env{}, "too short"},
		{[]string{"-debug-addr", "0.0.0.0:6060"}, env{}, "loopback"},
		{[]string{"-debug-addr", "127.0.0.1:6060"}, env{}, ""},
		{[]string{"-log-level", "loud"}, env{}, "debug, info, warn or error"},
		{[]string{"-log-level", "warn", "-log-format", "json"}, env{}, ""},
		{[]string{"-log-format", "xml"}, env{}, "text or json"},
	} {
		c, err := parseConfig(tc.args, tc.e.get)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one saying %q", tc.args, err, tc.want)
		case tc.want == "" && strings.Contains(strings.Join(tc.args, " "), "warn") && (c.LogLevel != slog.LevelWarn || !c.LogJSON):
			t.Errorf("%v: level %v json %v", tc.args, c.LogLevel, c.LogJSON)
		}
	}
}
