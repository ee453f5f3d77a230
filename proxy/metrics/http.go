package metrics

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the metrics and the health checks:
//   - /metrics: c, with the Go runtime's and the process's collectors, from a registry of
//     its own (never the global one, so a process may hold several proxies);
//   - /healthz: 200 while the proxy runs (a liveness probe: a master link down is no reason
//     to restart the proxy, which keeps serving what it holds);
//   - /readyz: 200 once the proxy can answer a replica (it holds a snapshot and a backlog),
//     503 with the reason before.
func Handler(c *Collector, logf func(string, ...any)) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errorLog(logf), Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		ls := c.src.Link.Status()
		fmt.Fprintf(w, "ok: master %s link %s\n", ls.Master.Addr, ls.State)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		v := c.src.History.View()
		if !v.Backlog || !v.Snapshot {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: no snapshot yet (the first sync with the master has not completed)")
			return
		}
		fmt.Fprintf(w, "ready: replid %s, offsets %d to %d, snapshot at %d\n", v.Replid, v.First, v.End, v.SnapshotOffset)
	})
	return mux
}

type errorLog func(string, ...any)

func (l errorLog) Println(v ...any) { l("Serving metrics: %v", fmt.Sprint(v...)) }
