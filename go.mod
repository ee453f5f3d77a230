module github.com/psync-proxy/psync-proxy

go 1.26.8

require (
	github.com/tidwall/redcon v1.6.4
	github.com/tidwall/resp v0.1.1
	go.uber.org/zap v1.28.0
)

require (
	github.com/tidwall/btree v1.1.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
