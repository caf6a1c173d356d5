package protocol

import (
	"errors"
	"strings"
	"testing"
)

const goodConn = "ConnectedRegistryName=edge-01;SyncTokenName=edge-01-sync-token;SyncTokenPassword=cGFzc3dvcmQ=x;ParentGatewayEndpoint=registry.example.com:5000;ParentEndpointProtocol=https"

var goodConnValue = ConnectionString{
	ConnectedRegistryName:  "edge-01",
	SyncTokenName:          "edge-01-sync-token",
	SyncTokenPassword:      "cGFzc3dvcmQ=x",
	ParentGatewayEndpoint:  "registry.example.com:5000",
	ParentEndpointProtocol: "https",
}

var connCases = []struct {
	name    string
	in      string
	want    ConnectionString
	wantErr string // substring of the error; empty for success
}{
	{name: "canonical", in: goodConn, want: goodConnValue},
	{name: "keys in another order", in: "ParentEndpointProtocol=https;ParentGatewayEndpoint=registry.example.com:5000;SyncTokenPassword=cGFzc3dvcmQ=x;SyncTokenName=edge-01-sync-token;ConnectedRegistryName=edge-01", want: goodConnValue},
	{name: "surrounding whitespace and newline", in: "  " + goodConn + "\n", want: goodConnValue},
	{name: "trailing semicolon", in: goodConn + ";", want: goodConnValue},
	{name: "empty pairs", in: ";;" + strings.ReplaceAll(goodConn, ";", ";;"), want: goodConnValue},
	{name: "spaces around keys", in: strings.ReplaceAll(goodConn, ";", "; "), want: goodConnValue},
	{name: "password with equals signs", in: strings.Replace(goodConn, "cGFzc3dvcmQ=x", "a==b=", 1), want: func() ConnectionString { c := goodConnValue; c.SyncTokenPassword = "a==b="; return c }()},
	{name: "http", in: strings.Replace(goodConn, "=https", "=http", 1), want: func() ConnectionString { c := goodConnValue; c.ParentEndpointProtocol = "http"; return c }()},
	{name: "IPv6 endpoint", in: strings.Replace(goodConn, "registry.example.com:5000", "[::1]:5000", 1), want: func() ConnectionString { c := goodConnValue; c.ParentGatewayEndpoint = "[::1]:5000"; return c }()},

	{name: "empty", in: "", wantErr: "missing ConnectedRegistryName, SyncTokenName, SyncTokenPassword, ParentGatewayEndpoint, ParentEndpointProtocol"},
	{name: "missing password", in: "ConnectedRegistryName=edge-01;SyncTokenName=t;ParentGatewayEndpoint=h;ParentEndpointProtocol=https", wantErr: "missing SyncTokenPassword"},
	{name: "missing two", in: "ConnectedRegistryName=edge-01;SyncTokenName=t;SyncTokenPassword=p", wantErr: "missing ParentGatewayEndpoint, ParentEndpointProtocol"},
	{name: "unknown key", in: goodConn + ";Region=eu", wantErr: `unknown key "Region"`},
	{name: "key case matters", in: strings.Replace(goodConn, "SyncTokenName", "synctokenname", 1), wantErr: `unknown key "synctokenname"`},
	{name: "duplicate key", in: goodConn + ";SyncTokenName=other", wantErr: `key "SyncTokenName" given twice`},
	{name: "pair without equals", in: goodConn + ";garbage", wantErr: `part 6 (7 characters) is not key=value`},
	{name: "piece of a password before an equals sign", in: goodConn + ";aB3dE6-gH9_=x", wantErr: `unknown key (not shown) in part 6`},
	{name: "empty password", in: strings.Replace(goodConn, "cGFzc3dvcmQ=x", "", 1), wantErr: "must not be empty"},
	{name: "empty token name", in: strings.Replace(goodConn, "edge-01-sync-token", "", 1), wantErr: "must not be empty"},
	{name: "empty endpoint", in: strings.Replace(goodConn, "registry.example.com:5000", "", 1), wantErr: "must not be empty"},
	{name: "bad protocol", in: strings.Replace(goodConn, "=https", "=ftp", 1), wantErr: `ParentEndpointProtocol "ftp": want https or http`},
	{name: "uppercase protocol", in: strings.Replace(goodConn, "=https", "=HTTPS", 1), wantErr: "want https or http"},
	{name: "empty protocol", in: strings.Replace(goodConn, "=https", "=", 1), wantErr: "want https or http"},
	{name: "endpoint is a URL", in: strings.Replace(goodConn, "registry.example.com:5000", "https://registry.example.com", 1), wantErr: "want host[:port]"},
	{name: "endpoint with path", in: strings.Replace(goodConn, "registry.example.com:5000", "registry.example.com/v2", 1), wantErr: "want host[:port]"},
	{name: "endpoint with credentials", in: strings.Replace(goodConn, "registry.example.com:5000", "u@registry.example.com", 1), wantErr: "want host[:port]"},
	{name: "endpoint with space", in: strings.Replace(goodConn, "registry.example.com:5000", "registry example", 1), wantErr: "want host[:port]"},
	{name: "registry name too short", in: strings.Replace(goodConn, "=edge-01;", "=edge;", 1), wantErr: "ConnectedRegistryName"},
	{name: "registry name with dot", in: strings.Replace(goodConn, "=edge-01;", "=edge.01;", 1), wantErr: "ConnectedRegistryName"},
	{name: "registry name with trailing space", in: strings.Replace(goodConn, "=edge-01;", "=edge-01 ;", 1), wantErr: "ConnectedRegistryName"},
}

func TestParseConnectionString(t *testing.T) {
	t.Parallel()
	for _, tc := range connCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseConnectionString(tc.in)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("got %+v, want an error containing %q", got, tc.wantErr)
				}
				if !errors.Is(err, ErrConnectionString) {
					t.Errorf("got %v, want an ErrConnectionString", err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got error %q, want it to contain %q", err, tc.wantErr)
				}
				if got != (ConnectionString{}) {
					t.Errorf("got %+v with an error, want the zero value", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestConnectionStringRender(t *testing.T) {
	t.Parallel()
	// String is the connection string handed to the operator, so it
	// carries the password; ParentURL is what the edge dials.
	if got := goodConnValue.String(); got != goodConn {
		t.Errorf("String: got %q, want %q", got, goodConn)
	}
	if got, want := goodConnValue.ParentURL(), "https://registry.example.com:5000"; got != want {
		t.Errorf("ParentURL: got %q, want %q", got, want)
	}
}

// TestConnectionStringErrorsRedact checks that no parse error echoes the
// password, even when a pasted string is damaged around it.
func TestConnectionStringErrorsRedact(t *testing.T) {
	t.Parallel()
	const secret = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5" // 44 characters, like a generated password
	for _, in := range []string{
		strings.Replace(goodConn, "cGFzc3dvcmQ=x", secret, 1) + ";SyncTokenPassword=" + secret,            // duplicate
		strings.Replace(goodConn, "SyncTokenPassword=cGFzc3dvcmQ=x", secret, 1),                           // key lost
		strings.Replace(goodConn, "SyncTokenPassword=cGFzc3dvcmQ=x", "SyncTokenPassword=ab;"+secret, 1),   // split by a ';'
		strings.Replace(goodConn, "SyncTokenPassword=cGFzc3dvcmQ=x", secret[:10]+"="+secret[10:], 1),      // key lost, '=' inside
		strings.Replace(goodConn, "SyncTokenPassword=cGFzc3dvcmQ=x", "SyncTokenPasword="+secret, 1),       // misspelt key
		strings.Replace(goodConn, "cGFzc3dvcmQ=x", secret, 1) + ";ParentEndpointProtocol=https",           // duplicate protocol
		strings.Replace(strings.Replace(goodConn, "cGFzc3dvcmQ=x", secret, 1), "=https", "=ftp", 1),       // bad protocol
		strings.Replace(strings.Replace(goodConn, "cGFzc3dvcmQ=x", secret, 1), "=edge-01;", "=e.1;", 1),   // bad name
		strings.Replace(strings.Replace(goodConn, "cGFzc3dvcmQ=x", secret, 1), ":5000", "/x", 1),          // bad endpoint
		strings.Replace(strings.Replace(goodConn, "cGFzc3dvcmQ=x", secret, 1), "SyncTokenName=", "X=", 1), // unknown key
	} {
		_, err := ParseConnectionString(in)
		if err == nil {
			t.Fatalf("ParseConnectionString(%q): want an error", in)
		}
		if strings.Contains(err.Error(), secret[:8]) || strings.Contains(err.Error(), secret[10:18]) {
			t.Errorf("error %q echoes the password", err)
		}
	}
}

// FuzzParseConnectionString checks that an accepted connection string
// renders with String to a string that parses to the same value, and that
// errors never carry a long run of the input's password.
func FuzzParseConnectionString(f *testing.F) {
	for _, tc := range connCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			if !errors.Is(err, ErrConnectionString) {
				t.Fatalf("got %v, want an ErrConnectionString", err)
			}
			return
		}
		if c.SyncTokenName == "" || c.SyncTokenPassword == "" || c.ParentGatewayEndpoint == "" ||
			(c.ParentEndpointProtocol != "https" && c.ParentEndpointProtocol != "http") ||
			ValidateName(c.ConnectedRegistryName) != nil {
			t.Fatalf("accepted %+v", c)
		}
		again, err := ParseConnectionString(c.String())
		if err != nil {
			t.Fatalf("String() = %q does not parse: %v", c.String(), err)
		}
		if again != c {
			t.Fatalf("round trip: got %+v, want %+v", again, c)
		}
		if !strings.HasPrefix(c.ParentURL(), c.ParentEndpointProtocol+"://") {
			t.Fatalf("ParentURL %q", c.ParentURL())
		}
	})
}

func BenchmarkParseConnectionString(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseConnectionString(goodConn); err != nil {
			b.Fatal(err)
		}
	}
}
