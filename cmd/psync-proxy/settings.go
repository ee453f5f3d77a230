package main

import (
	"path/filepath"
)

// settings are the options the proxy reports but does not apply itself, by directive name:
// CONFIG GET shows them, CONFIG REWRITE writes them back.
func (o *options) settings() map[string]string {
	host, port := splitListen(o.listen)
	return map[string]string{
		"bind":           host,
		"port":           port,
		"loglevel":       o.logLevel,
		"logfile":        o.logFile,
		"log-format":     o.logFormat,
		"tls-port":       o.tlsPort,
		"users-file":     o.usersFile,
		"metrics-listen": o.metricsListen,
	}
}

// rewriteHook is CONFIG REWRITE's writer, nil without a config file. Passwords that came from
// the environment stay out of the file, as users do (they are never in CONFIG's values): the
// file keeps its own lines for them, as Redis keeps user lines out of it with an aclfile.
func (o *options) rewriteHook() (path string, hook func(map[string][]string) error) {
	if o.confFile == "" {
		return "", nil
	}
	path = o.confFile
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	fromEnv := o.fromEnv
	return path, func(live map[string][]string) error {
		for name, env := range fromEnv {
			if env {
				delete(live, name)
			}
		}
		delete(live, "user")
		return rewriteConfFile(path, live)
	}
}
