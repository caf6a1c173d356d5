// Package s3 keeps blobs and upload sessions in an S3-compatible bucket,
// so that several replicas of a root registry share one store. A blob is
// the object <prefix>blobs/<algorithm>/<hex[:2]>/<hex>; an upload session
// is a small state object under <prefix>uploads/<id>/ beside a multipart
// upload of its content, so that any replica can continue a chunked push
// another one started. Nothing about a session lives in a process.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/storage"
)

// MinPartSize is the smallest part S3 accepts in a multipart upload but
// for the last one.
const MinPartSize = 5 << 20

// DefaultPartSize is the size of the parts uploads are cut into.
const DefaultPartSize = 8 << 20

// Options configure a Store.
type Options struct {
	// Endpoint is the service's URL, such as http://127.0.0.1:9000; empty
	// means AWS.
	Endpoint string
	// Region of the bucket; default us-east-1.
	Region string
	Bucket string
	// Prefix is prepended to every key, so that a bucket can be shared;
	// it ends in "/" unless empty.
	Prefix string
	// PathStyle addresses the bucket as <endpoint>/<bucket> rather than
	// <bucket>.<endpoint>, as most servers other than AWS need.
	PathStyle bool
	// CAFile is a PEM bundle of extra CAs to trust for the endpoint.
	CAFile string
	// AccessKey and SecretKey are the credentials.
	AccessKey, SecretKey string
	// PartSize of uploads; default DefaultPartSize, at least MinPartSize.
	PartSize int64
	// RedirectTTL, when positive, is how long the presigned URLs of
	// BlobURL stay valid.
	RedirectTTL time.Duration
	// LockLease is how long an append may hold a session before another
	// replica may take it over (it is renewed while the append runs);
	// default 30s.
	LockLease time.Duration
}

// Store is a blob store and the upload sessions that commit into it.
type Store struct {
	c        *s3.Client
	presign  *s3.PresignClient
	bucket   string
	prefix   string
	partSize int64
	ttl      time.Duration
	lease    time.Duration
}

// New returns a Store on the bucket o names. It does not contact the
// service: Check does.
func New(o Options) (*Store, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3: bucket is required")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3: part size %d is below S3's minimum of %d", o.PartSize, MinPartSize)
	}
	if o.LockLease <= 0 {
		o.LockLease = 30 * time.Second
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	hc, err := httpClient(o.CAFile)
	if err != nil {
		return nil, err
	}
	cfg := aws.Config{
		Region:      o.Region,
		HTTPClient:  hc,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, "")),
		// Checksums only where the API requires them: S3-compatible
		// servers differ in the trailing checksums they accept, and every
		// body sent here is content-addressed or hashed anyway.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           3,
	}
	c := s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = o.PathStyle
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	return &Store{c: c, presign: s3.NewPresignClient(c), bucket: o.Bucket, prefix: o.Prefix, partSize: o.PartSize, ttl: o.RedirectTTL, lease: o.LockLease}, nil
}

func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("s3: read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// Check reports whether the bucket can be reached with the credentials:
// it backs /readyz and `outpost config validate`.
func (s *Store) Check(ctx context.Context) error {
	if _, err := s.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return fmt.Errorf("s3: bucket %s: %w", s.bucket, err)
	}
	return nil
}

func (s *Store) blobKey(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("%w: %s: %w", storage.ErrBlobUnknown, d, err)
	}
	hex := d.Encoded()
	return s.prefix + "blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex, nil
}

// notFound reports whether err is S3's answer for a missing key.
func notFound(err error) bool {
	var nk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchUpload")
}

// preconditionFailed reports whether err is the 412 of a conditional
// write that lost.
func preconditionFailed(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || ae.ErrorCode() == "ConditionalRequestConflict")
}

// Stat implements storage.BlobStore.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	key, err := s.blobKey(d)
	if err != nil {
		return 0, err
	}
	out, err := s.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if notFound(err) {
		return 0, fmt.Errorf("%w: %s", storage.ErrBlobUnknown, d)
	}
	if err != nil {
		return 0, fmt.Errorf("s3: stat blob %s: %w", d, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Open implements storage.BlobStore. The reader streams from the bucket;
// a Seek before reading turns the next read into a ranged GET, which is
// how http.ServeContent answers Range requests.
func (s *Store) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	key, err := s.blobKey(d)
	if err != nil {
		return nil, 0, err
	}
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if notFound(err) {
		return nil, 0, fmt.Errorf("%w: %s", storage.ErrBlobUnknown, d)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("s3: open blob %s: %w", d, err)
	}
	size := aws.ToInt64(out.ContentLength)
	return &objectReader{ctx: ctx, s: s, key: key, size: size, body: out.Body}, size, nil
}

// Delete implements storage.BlobStore.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	key, err := s.blobKey(d)
	if err != nil {
		return nil //nolint:nilerr // an invalid digest names no blob, so there is nothing to delete
	}
	if _, err := s.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil && !notFound(err) {
		return fmt.Errorf("s3: delete blob %s: %w", d, err)
	}
	return nil
}

// BlobURL returns a presigned URL from which a client may GET blob d
// directly, valid for Options.RedirectTTL; it implements
// storage.Redirector.
func (s *Store) BlobURL(ctx context.Context, d digest.Digest) (string, error) {
	if s.ttl <= 0 {
		return "", errors.New("s3: redirects are off")
	}
	key, err := s.blobKey(d)
	if err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}, s3.WithPresignExpires(s.ttl))
	if err != nil {
		return "", fmt.Errorf("s3: presign blob %s: %w", d, err)
	}
	return req.URL, nil
}

// objectReader reads an object from its current position, opening a
// ranged GET when a Seek moved away from where the open body stands.
type objectReader struct {
	ctx       context.Context //nolint:containedctx // the reader is an io.ReadSeeker of the request that opened it
	s         *Store
	key       string
	size, pos int64
	body      io.ReadCloser
	bodyPos   int64
}

func (o *objectReader) Read(p []byte) (int, error) {
	if o.pos >= o.size {
		return 0, io.EOF
	}
	if o.body != nil && o.bodyPos != o.pos {
		_ = o.body.Close()
		o.body = nil
	}
	if o.body == nil {
		rng := fmt.Sprintf("bytes=%d-", o.pos)
		out, err := o.s.c.GetObject(o.ctx, &s3.GetObjectInput{Bucket: &o.s.bucket, Key: &o.key, Range: &rng})
		if err != nil {
			return 0, fmt.Errorf("s3: read %s at %d: %w", o.key, o.pos, err)
		}
		o.body, o.bodyPos = out.Body, o.pos
	}
	n, err := o.body.Read(p)
	o.pos += int64(n)
	o.bodyPos += int64(n)
	if errors.Is(err, io.EOF) && o.pos < o.size {
		return n, fmt.Errorf("s3: read %s: %w", o.key, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (o *objectReader) Seek(offset int64, whence int) (int64, error) {
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = o.pos + offset
	case io.SeekEnd:
		pos = o.size + offset
	default:
		return 0, fmt.Errorf("s3: seek: whence %d", whence)
	}
	if pos < 0 {
		return 0, fmt.Errorf("s3: seek to negative position %d", pos)
	}
	o.pos = pos
	return pos, nil
}

func (o *objectReader) Close() error {
	if o.body == nil {
		return nil
	}
	err := o.body.Close()
	o.body = nil
	return err
}
