// Command huren-ferretdb embeds FerretDB 1.24 so that development, CI and the benchmarks have a MongoDB
// wire-compatible database without downloading mongod.
//
// Usage: huren-ferretdb -listen 127.0.0.1:27017 -postgresql-url postgres://…   (the embedded default: PostgreSQL)
// Or: huren-ferretdb -listen … -dir ./data/ferretdb   (SQLite files of the earlier default, read once to migrate them)
// It prints "ready <addr>" on stdout once it accepts connections and stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "", "SQLite data directory of the earlier default (to migrate it)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	pgURL := flag.String("postgresql-url", "", "the PostgreSQL backend at this URL")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(err)
	}
	// Per-connection INFO lines are noise for an embedded development database.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	var url string
	if *pgURL == "" {
		if *dir == "" {
			fail(fmt.Errorf("-postgresql-url or -dir is required"))
		}
		abs, err := filepath.Abs(*dir)
		if err != nil {
			fail(err)
		}
		url = "file:" + abs + "/"
	}

	config := &ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: url,
	}
	if *pgURL != "" {
		config.Handler = "postgresql"
		config.PostgreSQLURL = *pgURL
		config.SQLiteURL = ""
	}
	// HUREN_FERRETDB_PPROF=127.0.0.1:6060 serves Go's profiles (/debug/pprof/profile?seconds=30): where FerretDB
	// spends its CPU under a benchmark's load. Off unless set.
	if addr := os.Getenv("HUREN_FERRETDB_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}

	f, err := ferretdb.New(config)
	if err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Stop with the process that started us: a broker killed with SIGKILL must not leave its database listening.
	parent := os.Getppid()
	go func() {
		for range time.Tick(time.Second) {
			if os.Getppid() != parent {
				stop()
				return
			}
		}
	}()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// Announce readiness only once the port accepts connections.
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", *listen, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-done:
			fail(fmt.Errorf("ferretdb stopped before ready: %v", err))
		default:
		}
		if time.Now().After(deadline) {
			fail(fmt.Errorf("ferretdb not listening on %s after 30s", *listen))
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("ready %s\n", *listen)

	if err := <-done; err != nil && ctx.Err() == nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "huren-ferretdb:", err)
	os.Exit(1)
}
