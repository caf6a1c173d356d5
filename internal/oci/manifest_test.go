package oci

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Digests used by the files in testdata/: the sha256 of "a", "b" and "c",
// and of the empty JSON object "{}".
const (
	dA     digest.Digest = "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
	dB     digest.Digest = "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
	dC     digest.Digest = "sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"
	dEmpty digest.Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
)

const created = "org.opencontainers.image.created"

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var (
	wantImage = Manifest{
		MediaType:    MediaTypeImageManifest,
		ArtifactType: v1.MediaTypeImageConfig,
		Blobs: []v1.Descriptor{
			{MediaType: v1.MediaTypeImageConfig, Digest: dA, Size: 1470},
			{MediaType: v1.MediaTypeImageLayerGzip, Digest: dB, Size: 3623807},
			{MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Digest: dC, Size: 1024, URLs: []string{"https://example.com/layer.tar.gz"}},
		},
		Annotations: map[string]string{created: "2024-01-01T00:00:00Z"},
	}
	wantIndex = Manifest{
		MediaType: MediaTypeImageIndex,
		Manifests: []v1.Descriptor{
			{MediaType: MediaTypeImageManifest, Digest: dA, Size: 7143, Platform: &v1.Platform{Architecture: "amd64", OS: "linux"}},
			{MediaType: MediaTypeImageManifest, Digest: dB, Size: 7682, Platform: &v1.Platform{Architecture: "arm64", OS: "linux", Variant: "v8"}},
		},
	}
	wantDocker = Manifest{
		MediaType:    MediaTypeDockerManifest,
		ArtifactType: "application/vnd.docker.container.image.v1+json",
		Blobs: []v1.Descriptor{
			{MediaType: "application/vnd.docker.container.image.v1+json", Digest: dA, Size: 1469},
			{MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", Digest: dB, Size: 2811969},
			{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Digest: dC, Size: 1024, URLs: []string{"https://example.com/foreign.tar.gz"}},
		},
	}
	wantDockerList = Manifest{
		MediaType: MediaTypeDockerManifestList,
		Manifests: []v1.Descriptor{
			{MediaType: MediaTypeDockerManifest, Digest: dA, Size: 528, Platform: &v1.Platform{Architecture: "amd64", OS: "linux"}},
		},
	}
	wantArtifact = Manifest{
		MediaType:    MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.sbom.v1+json",
		Subject:      &v1.Descriptor{MediaType: MediaTypeImageManifest, Digest: dC, Size: 7143},
		Blobs: []v1.Descriptor{
			{MediaType: MediaTypeEmptyJSON, Digest: dEmpty, Size: 2, Data: []byte("{}")},
			{MediaType: "application/vnd.example.sbom.v1+json", Digest: dB, Size: 512},
		},
		Annotations: map[string]string{created: "2024-01-01T00:00:00Z"},
	}
)

// goodDesc is a valid descriptor for building inline bodies.
const goodDesc = `{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + string(dB) + `","size":1}`

func imageBody(config, layers string) string {
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + config + `,"layers":[` + layers + `]}`
}

type manifestCase struct {
	name        string
	contentType string
	file        string // body from testdata/, or
	body        string // an inline body
	want        Manifest
	wantErr     string // substring of the error; empty for success
}

func (tc manifestCase) bytes(tb testing.TB) []byte {
	if tc.file != "" {
		return readTestdata(tb, tc.file)
	}
	return []byte(tc.body)
}

var manifestCases = []manifestCase{
	{name: "OCI image", contentType: MediaTypeImageManifest, file: "oci-image.json", want: wantImage},
	{name: "OCI image without Content-Type", file: "oci-image.json", want: wantImage},
	{name: "OCI image with parameters", contentType: MediaTypeImageManifest + "; charset=utf-8", file: "oci-image.json", want: wantImage},
	{name: "OCI image with uppercase Content-Type", contentType: "Application/VND.OCI.Image.Manifest.v1+JSON", file: "oci-image.json", want: wantImage},
	{name: "OCI index", contentType: MediaTypeImageIndex, file: "oci-index.json", want: wantIndex},
	{name: "OCI index without Content-Type", file: "oci-index.json", want: wantIndex},
	{name: "Docker schema2", contentType: MediaTypeDockerManifest, file: "docker-manifest.json", want: wantDocker},
	{name: "Docker manifest list", contentType: MediaTypeDockerManifestList, file: "docker-list.json", want: wantDockerList},
	{name: "artifact with subject", contentType: MediaTypeImageManifest, file: "artifact.json", want: wantArtifact},
	{
		name: "mediaType only in Content-Type", contentType: MediaTypeImageManifest,
		body: `{"schemaVersion":2,"config":` + goodDesc + `}`,
		want: Manifest{MediaType: MediaTypeImageManifest, ArtifactType: v1.MediaTypeImageLayerGzip, Blobs: []v1.Descriptor{{MediaType: v1.MediaTypeImageLayerGzip, Digest: dB, Size: 1}}},
	},
	{
		name: "empty index", contentType: MediaTypeImageIndex,
		body: `{"schemaVersion":2,"manifests":[]}`,
		want: Manifest{MediaType: MediaTypeImageIndex, Manifests: []v1.Descriptor{}},
	},
	{
		name: "index artifact with subject", contentType: MediaTypeImageIndex,
		body: `{"schemaVersion":2,"artifactType":"application/x.sig","manifests":[],"subject":` + goodDesc + `}`,
		want: Manifest{MediaType: MediaTypeImageIndex, ArtifactType: "application/x.sig", Manifests: []v1.Descriptor{}, Subject: &v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: dB, Size: 1}},
	},
	{name: "schema1 signed", contentType: "application/vnd.docker.distribution.manifest.v1+prettyjws", file: "schema1.json", wantErr: `unsupported manifest media type "application/vnd.docker.distribution.manifest.v1+prettyjws"`},
	{name: "schema1 unsigned", contentType: "application/vnd.docker.distribution.manifest.v1+json", file: "schema1.json", wantErr: "unsupported manifest media type"},
	{name: "schema1 without Content-Type", file: "schema1.json", wantErr: `unsupported manifest media type ""`},
	{name: "schema1 sent as schema2", contentType: MediaTypeDockerManifest, file: "schema1.json", wantErr: "schemaVersion must be 2"},
	{name: "OCI artifact manifest type", contentType: "application/vnd.oci.artifact.manifest.v1+json", body: `{"mediaType":"application/vnd.oci.artifact.manifest.v1+json","artifactType":"x/y","blobs":[]}`, wantErr: "unsupported manifest media type"},
	{name: "Content-Type differs from mediaType", contentType: MediaTypeDockerManifest, file: "oci-image.json", wantErr: "does not match Content-Type"},
	{name: "index body sent as image", contentType: MediaTypeImageManifest, file: "oci-index.json", wantErr: "does not match Content-Type"},
	{name: "image body sent as index", contentType: MediaTypeImageIndex, file: "oci-image.json", wantErr: "does not match Content-Type"},
	{name: "unknown Content-Type", contentType: "application/json", body: `{"schemaVersion":2}`, wantErr: `unsupported manifest media type "application/json"`},
	{name: "malformed Content-Type", contentType: "application/vnd.oci.image.manifest.v1+json; =", file: "oci-image.json", wantErr: "Content-Type"},
	{name: "invalid JSON", contentType: MediaTypeImageManifest, body: `{"schemaVersion":2,`, wantErr: "not a JSON manifest"},
	{name: "trailing data", contentType: MediaTypeImageManifest, body: imageBody(goodDesc, "") + `{}`, wantErr: "not a JSON manifest"},
	{name: "JSON array", contentType: MediaTypeImageManifest, body: `[]`, wantErr: "not a JSON manifest"},
	{name: "empty body", contentType: MediaTypeImageManifest, body: ``, wantErr: "not a JSON manifest"},
	{name: "null body", contentType: MediaTypeImageManifest, body: `null`, wantErr: "schemaVersion must be 2"},
	{name: "wrong field type", contentType: MediaTypeImageManifest, body: `{"schemaVersion":"2"}`, wantErr: "not a JSON manifest"},
	{name: "missing schemaVersion", contentType: MediaTypeImageManifest, body: `{"config":` + goodDesc + `}`, wantErr: "schemaVersion must be 2"},
	{name: "schemaVersion 3", contentType: MediaTypeImageManifest, body: `{"schemaVersion":3,"config":` + goodDesc + `}`, wantErr: "schemaVersion must be 2"},
	{name: "index with config", contentType: MediaTypeImageIndex, body: `{"schemaVersion":2,"config":` + goodDesc + `,"manifests":[]}`, wantErr: "an index has no config or layers"},
	{name: "index with layers", contentType: MediaTypeImageIndex, body: `{"schemaVersion":2,"layers":[],"manifests":[]}`, wantErr: "an index has no config or layers"},
	{name: "index without manifests", contentType: MediaTypeImageIndex, body: `{"schemaVersion":2}`, wantErr: "an index needs a manifests list"},
	{name: "image without config", contentType: MediaTypeImageManifest, body: `{"schemaVersion":2,"layers":[` + goodDesc + `]}`, wantErr: "needs a config descriptor"},
	{name: "image with manifests", contentType: MediaTypeImageManifest, body: `{"schemaVersion":2,"config":` + goodDesc + `,"manifests":[]}`, wantErr: "has no manifests list"},
	{name: "config digest uppercase", contentType: MediaTypeImageManifest, body: imageBody(`{"mediaType":"a/b","digest":"sha256:`+strings.ToUpper(hex64)+`","size":1}`, ""), wantErr: "descriptor digest"},
	{name: "layer digest short", contentType: MediaTypeImageManifest, body: imageBody(goodDesc, `{"mediaType":"a/b","digest":"sha256:abc","size":1}`), wantErr: "descriptor digest"},
	{name: "layer digest missing", contentType: MediaTypeImageManifest, body: imageBody(goodDesc, `{"mediaType":"a/b","size":1}`), wantErr: "descriptor digest"},
	{name: "layer digest sha384", contentType: MediaTypeImageManifest, body: imageBody(goodDesc, `{"mediaType":"a/b","digest":"sha384:`+strings.Repeat("a", 96)+`","size":1}`), wantErr: "unsupported algorithm"},
	{name: "negative size", contentType: MediaTypeImageManifest, body: imageBody(goodDesc, `{"mediaType":"a/b","digest":"`+string(dA)+`","size":-1}`), wantErr: "negative size"},
	{name: "descriptor without mediaType", contentType: MediaTypeImageManifest, body: imageBody(`{"digest":"`+string(dA)+`","size":1}`, ""), wantErr: "has no mediaType"},
	{name: "index child bad digest", contentType: MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"md5:abc","size":1}]}`, wantErr: "descriptor digest"},
	{name: "index child negative size", contentType: MediaTypeImageIndex, body: `{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"` + string(dA) + `","size":-5}]}`, wantErr: "negative size"},
	{name: "subject bad digest", contentType: MediaTypeImageManifest, body: `{"schemaVersion":2,"config":` + goodDesc + `,"subject":{"mediaType":"a/b","digest":"sha256:zz","size":1}}`, wantErr: "subject: "},
	{name: "subject negative size", contentType: MediaTypeImageManifest, body: `{"schemaVersion":2,"config":` + goodDesc + `,"subject":{"mediaType":"a/b","digest":"` + string(dA) + `","size":-1}}`, wantErr: "subject: "},
}

func TestParseManifest(t *testing.T) {
	t.Parallel()
	for _, tc := range manifestCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseManifest(tc.contentType, tc.bytes(t))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("got %+v, want an error containing %q", got, tc.wantErr)
				}
				if !errors.Is(err, ErrManifestInvalid) {
					t.Errorf("got %v, want an ErrManifestInvalid", err)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got error %q, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestMediaTypePredicates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mt                      string
		manifest, index, nondis bool
	}{
		{MediaTypeImageManifest, true, false, false},
		{MediaTypeImageIndex, true, true, false},
		{MediaTypeDockerManifest, true, false, false},
		{MediaTypeDockerManifestList, true, true, false},
		{"application/vnd.docker.distribution.manifest.v1+prettyjws", false, false, false},
		{v1.MediaTypeImageLayerGzip, false, false, false},
		{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", false, false, true},
		{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", false, false, true},
		{"", false, false, false},
	} {
		if got := IsManifestMediaType(tc.mt); got != tc.manifest {
			t.Errorf("IsManifestMediaType(%q): got %v, want %v", tc.mt, got, tc.manifest)
		}
		if got := IsIndex(tc.mt); got != tc.index {
			t.Errorf("IsIndex(%q): got %v, want %v", tc.mt, got, tc.index)
		}
		if got := IsNonDistributable(tc.mt); got != tc.nondis {
			t.Errorf("IsNonDistributable(%q): got %v, want %v", tc.mt, got, tc.nondis)
		}
	}
}

// FuzzParseManifest checks that an accepted manifest is internally
// consistent: a supported media type, descriptors with valid digests,
// sizes and media types, and the same result when parsed again with its
// own media type as the Content-Type.
func FuzzParseManifest(f *testing.F) {
	for _, tc := range manifestCases {
		f.Add(tc.contentType, tc.bytes(f))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		m, err := ParseManifest(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrManifestInvalid) {
				t.Fatalf("got %v, want an ErrManifestInvalid", err)
			}
			return
		}
		if !IsManifestMediaType(m.MediaType) {
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		if IsIndex(m.MediaType) {
			if m.Blobs != nil || m.Manifests == nil {
				t.Fatalf("index with blobs %v, manifests %v", m.Blobs, m.Manifests)
			}
		} else if len(m.Blobs) == 0 || m.Manifests != nil {
			t.Fatalf("image manifest with blobs %v, manifests %v", m.Blobs, m.Manifests)
		}
		descs := append(append([]v1.Descriptor{}, m.Blobs...), m.Manifests...)
		if m.Subject != nil {
			descs = append(descs, *m.Subject)
		}
		for _, d := range descs {
			if _, err := ParseDigest(string(d.Digest)); err != nil {
				t.Fatalf("accepted descriptor digest %q: %v", d.Digest, err)
			}
			if d.Size < 0 || d.MediaType == "" {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		again, err := ParseManifest(m.MediaType, body)
		if err != nil {
			t.Fatalf("parsing again with Content-Type %q: %v", m.MediaType, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("parsing again: got %+v, want %+v", again, m)
		}
	})
}

func BenchmarkParseManifest(b *testing.B) {
	for _, bc := range []struct{ name, file, mt string }{
		{"image", "oci-image.json", MediaTypeImageManifest},
		{"index", "oci-index.json", MediaTypeImageIndex},
		{"artifact", "artifact.json", MediaTypeImageManifest},
		{"docker", "docker-manifest.json", MediaTypeDockerManifest},
	} {
		body := readTestdata(b, bc.file)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := ParseManifest(bc.mt, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkValidateName(b *testing.B) {
	name := "team/project/component/service-name_v2"
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateName(name); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDigest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDigest(string(dA)); err != nil {
			b.Fatal(err)
		}
	}
}
