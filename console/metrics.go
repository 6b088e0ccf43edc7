package console

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count the API's requests by endpoint and status and time them:
// a page that is slow on a long range shows here before users say so.
type metrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flowlens_console_requests_total",
			Help: "Console API requests, by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flowlens_console_request_seconds",
			Help: "Console API request time (the page's queries included), by endpoint.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)},
			[]string{"endpoint"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.seconds} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// instrument counts and times the requests of one endpoint.
func (m *metrics) instrument(endpoint string, next http.Handler) http.Handler {
	timer := m.seconds.WithLabelValues(endpoint)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		timer.Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(endpoint, strconv.Itoa(sw.code)).Inc()
	})
}
