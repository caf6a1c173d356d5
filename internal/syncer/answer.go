package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ErrNoAnswer is a parent that sent nothing for the answer timeout of a
// request made with WithAnswerTimeout. It is a connection failure
// (errors.Is(err, ErrConnection) holds) that is not retried: the caller,
// a client waiting for a pull-through, wants an answer now.
var ErrNoAnswer = fmt.Errorf("%w: no answer in time", ErrConnection)

type answerKey struct{}

// WithAnswerTimeout makes every request to the parent made with ctx give
// up when the parent sends nothing for d: no response headers within d of
// sending the request (token round trips included), or no body bytes for
// d while reading. A slow but moving transfer is not cut.
func WithAnswerTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, answerKey{}, d)
}

func answerTimeout(ctx context.Context) time.Duration {
	d, _ := ctx.Value(answerKey{}).(time.Duration)
	return d
}

// watchdog cancels a request's context when the parent stays silent.
type watchdog struct {
	d      time.Duration
	t      *time.Timer
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// watch returns req with a context that the watchdog cancels, and the
// watchdog; nil when req's context has no answer timeout.
func watch(req *http.Request) (*http.Request, *watchdog) {
	d := answerTimeout(req.Context())
	if d <= 0 {
		return req, nil
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{d: d, ctx: ctx, cancel: cancel}
	w.t = time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: the parent sent nothing for %s (sync.onDemandTimeout)", ErrNoAnswer, d))
	})
	return req.WithContext(ctx), w
}

// explain replaces err with the watchdog's cause when it fired.
func (w *watchdog) explain(err error) error {
	if err == nil {
		return nil
	}
	if cause := context.Cause(w.ctx); errors.Is(cause, ErrNoAnswer) {
		return cause
	}
	return err
}

// stop releases the watchdog and its context.
func (w *watchdog) stop() {
	w.t.Stop()
	w.cancel(nil)
}

// body wraps a response body: each read that brings bytes restarts the
// watchdog; Close stops it.
func (w *watchdog) body(rc io.ReadCloser) io.ReadCloser {
	w.t.Reset(w.d)
	return &watchedBody{rc: rc, w: w}
}

type watchedBody struct {
	rc io.ReadCloser
	w  *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.t.Reset(b.w.d)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.w.explain(err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.rc.Close()
	b.w.stop()
	return err
}
