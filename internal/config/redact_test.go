package config

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"ConnectedRegistryName=e1;SyncTokenName=t;SyncTokenPassword=s3cr3t=x;ParentGatewayEndpoint=h:1;ParentEndpointProtocol=https",
			"ConnectedRegistryName=e1;SyncTokenName=t;SyncTokenPassword=<redacted>;ParentGatewayEndpoint=h:1;ParentEndpointProtocol=https"},
		{"SyncTokenPassword=ab;cd;ConnectedRegistryName=e1", "SyncTokenPassword=<redacted>;<redacted>;ConnectedRegistryName=e1"},
		{"Unknown=s3cr3t; SyncTokenName=t", "Unknown=<redacted>; SyncTokenName=t"},
	} {
		if got := RedactConnectionString(tc.in); got != tc.want {
			t.Errorf("RedactConnectionString(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"https://registry.example.com", "https://registry.example.com"},
		{"https://user@registry.example.com/x", "https://user@registry.example.com/x"},
		{"https://user:s3cr3t@registry.example.com:5000/x", "https://user:<redacted>@registry.example.com:5000/x"},
		{"https://user:s3%zz@host", "<redacted>"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
	c := Default()
	c.ConnectionString = "ConnectedRegistryName=e1;SyncTokenName=t;SyncTokenPassword=s3cr3t;ParentGatewayEndpoint=h:1;ParentEndpointProtocol=https"
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cr3t") || !strings.Contains(string(out), "<redacted>") {
		t.Errorf("Marshal shows the password:\n%s", out)
	}
	if !strings.Contains(c.ConnectionString, "s3cr3t") {
		t.Error("Marshal changed the configuration it printed")
	}
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"host=db user=outpost password=s3cret dbname=outpost", "host=db user=outpost password=" + RedactedText + " dbname=outpost"},
		{"postgres://outpost:s3cret@db:5432/outpost?sslmode=require", "postgres://outpost:" + RedactedText + "@db:5432/outpost?sslmode=require"},
		{"host=/run/pg dbname=outpost", "host=/run/pg dbname=outpost"},
	} {
		if got := RedactDSN(tc.in); got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
