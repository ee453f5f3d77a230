package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// parseLogLevel reads a zap level name or one of Redis's loglevel words, mapped onto the
// nearest zap level: verbose is debug (zap has nothing between debug and info), notice is
// info, warning is warn, and nothing turns logging off.
func parseLogLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(s) {
	case "verbose":
		return zapcore.DebugLevel, nil
	case "notice":
		return zapcore.InfoLevel, nil
	case "warning":
		return zapcore.WarnLevel, nil
	case "nothing":
		return zapcore.FatalLevel + 1, nil
	}
	return zapcore.ParseLevel(strings.ToLower(s))
}

// logTo sends the log to file, appended to as Redis's logfile is. zap keeps the file open, so
// rotating it needs copytruncate (Redis reopens it for every line).
func logTo(cfg *zap.Config, file string) error {
	// An absolute path, so that zap does not take "a:b.log" for a URL with a scheme.
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if err := checkLogFile(abs); err != nil {
		return fmt.Errorf("can't open the log file: %w", err)
	}
	cfg.OutputPaths = []string{abs}
	return nil
}

// checkLogFile fails as Redis's start does when the log file cannot be opened for appending.
func checkLogFile(file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
