package bundle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// inventoryMagic starts every inventory file.
const inventoryMagic = "OUTPOST-INVENTORY 1\n"

// Inventory is the set of blobs a site holds (manifests included: they
// are blobs of the store too), carried from the site to the root so that
// an export leaves out what the site has. The file is exact, not a
// probabilistic filter: 32 bytes per SHA-256 digest, sorted, after a
// one-line JSON header, closed by the SHA-256 of everything before it
// (3.2 MB for 100,000 blobs).
type Inventory struct {
	SiteID  string    `json:"siteId"`
	Name    string    `json:"name,omitempty"`
	Created time.Time `json:"created"`
	Count   int       `json:"blobs"`
	// Bytes is the total size of the blobs listed.
	Bytes int64 `json:"bytes"`

	sums [][sha256.Size]byte
}

// NewInventory collects the digests walk reports into an inventory
// (SHA-512 blobs are left out: the root sends them).
func NewInventory(ctx context.Context, siteID, name string, walk func(ctx context.Context, fn func(d digest.Digest, size int64) error) error) (*Inventory, error) {
	inv := &Inventory{SiteID: siteID, Name: name, Created: time.Now().UTC().Truncate(time.Second)}
	err := walk(ctx, func(d digest.Digest, size int64) error {
		if d.Algorithm() != digest.SHA256 {
			return nil
		}
		var s [sha256.Size]byte
		if _, err := hex.Decode(s[:], []byte(d.Encoded())); err != nil {
			return nil
		}
		inv.sums = append(inv.sums, s)
		inv.Bytes += size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	slices.SortFunc(inv.sums, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	inv.sums = slices.Compact(inv.sums)
	inv.Count = len(inv.sums)
	return inv, nil
}

// Has reports whether the site holds blob d.
func (inv *Inventory) Has(d digest.Digest) bool {
	if inv == nil || d.Algorithm() != digest.SHA256 {
		return false
	}
	var s [sha256.Size]byte
	if _, err := hex.Decode(s[:], []byte(d.Encoded())); err != nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(inv.sums, s, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// WriteTo writes the inventory file.
func (inv *Inventory) WriteTo(w io.Writer) (int64, error) {
	h := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	hdr, err := json.Marshal(inv)
	if err != nil {
		return 0, fmt.Errorf("encode inventory: %w", err)
	}
	n := int64(len(inventoryMagic) + len(hdr) + 1 + len(inv.sums)*sha256.Size + sha256.Size)
	_, _ = bw.WriteString(inventoryMagic)
	_, _ = bw.Write(hdr)
	_ = bw.WriteByte('\n')
	for _, s := range inv.sums {
		_, _ = bw.Write(s[:])
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("write inventory: %w", err)
	}
	if _, err := w.Write(h.Sum(nil)); err != nil {
		return 0, fmt.Errorf("write inventory: %w", err)
	}
	return n, nil
}

// maxInventoryBlobs bounds an inventory read (10 million blobs, 320 MB).
const maxInventoryBlobs = 10_000_000

// ReadInventory reads and verifies an inventory file; it returns the
// inventory and the file's digest (the base a delta names).
func ReadInventory(r io.Reader) (*Inventory, digest.Digest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInventoryBlobs*sha256.Size+1<<20))
	if err != nil {
		return nil, "", fmt.Errorf("read inventory: %w", err)
	}
	inv, err := readInventory(b)
	if err != nil {
		return nil, "", err
	}
	return inv, digest.FromBytes(b), nil
}

// readInventory is ReadInventory over the whole file's bytes.
func readInventory(b []byte) (*Inventory, error) {
	rest, ok := bytes.CutPrefix(b, []byte(inventoryMagic))
	if !ok {
		return nil, fmt.Errorf("%w: not an Outpost inventory (want a file written by outpost bundle inventory)", ErrFormat)
	}
	if len(b) < len(inventoryMagic)+sha256.Size {
		return nil, fmt.Errorf("%w: inventory truncated", ErrFormat)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: inventory checksum mismatch (damaged or edited)", ErrFormat)
	}
	rest = rest[:len(rest)-sha256.Size]
	hdr, list, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: inventory header", ErrFormat)
	}
	var inv Inventory
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inv); err != nil {
		return nil, fmt.Errorf("%w: inventory header: %w", ErrFormat, err)
	}
	if inv.Count < 0 || inv.Count > maxInventoryBlobs || len(list) != inv.Count*sha256.Size {
		return nil, fmt.Errorf("%w: inventory says %d blobs and holds %d bytes of digests", ErrFormat, inv.Count, len(list))
	}
	inv.sums = make([][sha256.Size]byte, inv.Count)
	for i := range inv.sums {
		copy(inv.sums[i][:], list[i*sha256.Size:])
		if i > 0 && bytes.Compare(inv.sums[i-1][:], inv.sums[i][:]) >= 0 {
			return nil, fmt.Errorf("%w: inventory digests not sorted", ErrFormat)
		}
	}
	return &inv, nil
}

// SiteID returns the site's identity, <dataDir>/bundle/site-id, created
// on first use: what binds an inventory and the bundles made from it to
// one registry, parent or not.
func SiteID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "bundle", "site-id")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read site id: %w", err)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create bundle directory: %w", err)
	}
	if err := atomicfile.Write(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}
