package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons of flowlens_detect_webhook_dropped_total.
const (
	WebhookQueueFull  = "queue_full"  // the sender is behind: Alert found the queue full
	WebhookNotRunning = "not_running" // Alert before Start or after Stop
	WebhookRejected   = "rejected"    // the server answered 4xx (other than 408 and 429): retrying will not help
	WebhookFailed     = "failed"      // every attempt failed (network errors, 5xx, 408, 429)
	WebhookStopped    = "stopped"     // still queued or being retried when StopTimeout ran out
)

// WebhookConfig configures a Webhook.
type WebhookConfig struct {
	URL     string
	Headers map[string]string // e.g. Authorization
	// QueueSize bounds the alerts waiting; a full queue drops and counts.
	QueueSize int
	Timeout   time.Duration // per request
	// MaxAttempts per alert, the first included; the wait between
	// attempts starts at Backoff and doubles up to MaxBackoff.
	MaxAttempts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// StopTimeout bounds how long Stop keeps sending what is queued.
	StopTimeout time.Duration
}

// DefaultWebhookConfig returns the defaults, with no URL.
func DefaultWebhookConfig() WebhookConfig {
	return WebhookConfig{QueueSize: 1024, Timeout: 5 * time.Second, MaxAttempts: 4,
		Backoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, StopTimeout: 5 * time.Second}
}

func (c *WebhookConfig) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%w: webhook url %q: want an http:// or https:// URL", ErrInvalidConfig, c.URL)
	case c.QueueSize < 1, c.MaxAttempts < 1, c.Timeout <= 0, c.Backoff <= 0, c.MaxBackoff < c.Backoff, c.StopTimeout <= 0:
		return fmt.Errorf("%w: webhook: queue_size and max_attempts must be >= 1, timeout, backoff and stop_timeout > 0, max_backoff >= backoff", ErrInvalidConfig)
	}
	return nil
}

// Webhook is a Sink POSTing each alert as JSON (Alert.MarshalJSON) to a
// URL. Alert never blocks: one sender goroutine works through a bounded
// queue, retrying with exponential backoff.
type Webhook struct {
	cfg    WebhookConfig
	log    *slog.Logger
	client *http.Client
	queue  chan *Alert

	running atomic.Bool
	mu      sync.Mutex // Start and Stop
	quit    chan struct{}
	done    chan struct{}
	cancel  context.CancelFunc

	sent, retries prometheus.Counter
	dropped       *prometheus.CounterVec
	queueFull     prometheus.Counter
	notRunning    prometheus.Counter
}

// NewWebhook checks cfg and registers the metrics (flowlens_detect_webhook_*)
// on reg when it is not nil.
func NewWebhook(cfg WebhookConfig, log *slog.Logger, reg prometheus.Registerer) (*Webhook, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	w := &Webhook{cfg: cfg, log: log, client: &http.Client{Timeout: cfg.Timeout}, queue: make(chan *Alert, cfg.QueueSize),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_detect_webhook_sent_total",
			Help: "Alerts the webhook accepted (2xx)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "flowlens_detect_webhook_retries_total",
			Help: "Webhook requests repeated after a failure."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_detect_webhook_dropped_total",
			Help: "Alerts the webhook did not deliver, by reason."}, []string{"reason"}),
	}
	w.queueFull, w.notRunning = w.dropped.WithLabelValues(WebhookQueueFull), w.dropped.WithLabelValues(WebhookNotRunning)
	if reg != nil {
		for _, c := range []prometheus.Collector{w.sent, w.retries, w.dropped} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("detect: register webhook metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Start starts the sender.
func (w *Webhook) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running.Load() {
		return errors.New("webhook: already started")
	}
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel, w.quit, w.done = cancel, make(chan struct{}), make(chan struct{})
	w.running.Store(true)
	go w.run(sendCtx)
	return nil
}

// Stop sends what is queued for at most StopTimeout, then counts the rest
// as dropped{stopped}.
func (w *Webhook) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running.Swap(false) {
		return
	}
	close(w.quit)
	t := time.AfterFunc(w.cfg.StopTimeout, w.cancel)
	<-w.done
	t.Stop()
	w.cancel()
}

// Alert implements Sink: it queues a, or counts it dropped.
func (w *Webhook) Alert(a *Alert) {
	if !w.running.Load() {
		w.notRunning.Inc()
		return
	}
	select {
	case w.queue <- a:
	default:
		w.queueFull.Inc()
	}
}

func (w *Webhook) run(ctx context.Context) {
	defer close(w.done)
	for {
		select {
		case a := <-w.queue:
			w.deliver(ctx, a)
		case <-w.quit:
			for {
				select {
				case a := <-w.queue:
					w.deliver(ctx, a)
				default:
					return
				}
			}
		}
	}
}

// errPermanent marks an answer that retrying will not change.
var errPermanent = errors.New("rejected")

func (w *Webhook) deliver(ctx context.Context, a *Alert) {
	if ctx.Err() != nil {
		w.dropped.WithLabelValues(WebhookStopped).Inc()
		return
	}
	body, err := json.Marshal(a)
	if err != nil {
		w.dropped.WithLabelValues(WebhookRejected).Inc()
		return
	}
	wait := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err = w.post(ctx, body)
		if err == nil {
			w.sent.Inc()
			return
		}
		switch {
		case ctx.Err() != nil:
			w.dropped.WithLabelValues(WebhookStopped).Inc()
			return
		case errors.Is(err, errPermanent):
			w.log.Warn("webhook rejected an alert", "url", w.cfg.URL, "error", err)
			w.dropped.WithLabelValues(WebhookRejected).Inc()
			return
		case attempt >= w.cfg.MaxAttempts:
			w.log.Warn("webhook failed", "url", w.cfg.URL, "attempts", attempt, "error", err)
			w.dropped.WithLabelValues(WebhookFailed).Inc()
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.dropped.WithLabelValues(WebhookStopped).Inc()
			return
		}
		wait = min(2*wait, w.cfg.MaxBackoff)
		w.retries.Inc()
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowlens-detect")
	for k, v := range w.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%w: status %s", errPermanent, resp.Status)
	}
	return fmt.Errorf("status %s", resp.Status)
}
