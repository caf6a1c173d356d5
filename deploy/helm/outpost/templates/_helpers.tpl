{{- define "outpost.fullname" -}}
{{- if contains "outpost" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-outpost" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "outpost.labels" -}}
app.kubernetes.io/name: outpost
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "outpost.selector" -}}
app.kubernetes.io/name: outpost
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "outpost.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
outpost.normalize moves the connected-registry extension's dotted keys
("service.clusterIP": "10.96.0.50" at the top level, as its settings files
write them) to the nested values the templates read; the dotted key wins.
The extension writes every value as a string, so "true"/"false" become
booleans and digits become numbers where the chart's value is one.
values.schema.json lists the dotted keys it accepts. Every template
includes this first; running it again changes nothing.
*/}}
{{- define "outpost.normalize" -}}
{{- $top := .Values -}}
{{- range $key := keys $top | sortAlpha -}}
{{- if contains "." $key -}}
{{- $val := index $top $key -}}
{{- $parts := splitList "." $key -}}
{{- $m := $top -}}
{{- range $p := initial $parts -}}
{{- if not (kindIs "map" (index $m $p)) -}}{{- $_ := set $m $p dict -}}{{- end -}}
{{- $m = index $m $p -}}
{{- end -}}
{{- $leaf := last $parts -}}
{{- $old := index $m $leaf -}}
{{- if and (kindIs "string" $val) (or (kindIs "bool" $old) (and (kindIs "invalid" $old) (has $val (list "true" "false")))) -}}
{{- $val = eq $val "true" -}}
{{- else if and (kindIs "string" $val) (or (kindIs "float64" $old) (kindIs "int64" $old) (kindIs "int" $old)) -}}
{{- $val = atoi $val -}}
{{- end -}}
{{- if and (eq $key "cert-manager.install") (ne (toString $val) (toString $old)) -}}
{{- fail (printf "cert-manager.install: %v as a dotted key cannot switch the cert-manager dependency chart, which Helm decides before reading dotted keys; give it as --set cert-manager.install=%v, or convert the settings file with outpost helm-values" $val $val) -}}
{{- end -}}
{{- $_ := set $m $leaf $val -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The TLS setup: files (your secret or values, which always win),
certmanager or auto. */}}
{{- define "outpost.tlsMode" -}}
{{- $cm := index .Values "cert-manager" -}}
{{- if or .Values.tls.secret .Values.tls.crt -}}files
{{- else if $cm.enabled -}}certmanager
{{- else -}}auto
{{- end -}}
{{- end -}}

{{/* The Secret holding tls.crt, tls.key and ca.crt in files modes. */}}
{{- define "outpost.tlsSecret" -}}
{{- if .Values.tls.secret -}}{{ .Values.tls.secret }}
{{- else -}}{{ include "outpost.fullname" . }}-tls
{{- end -}}
{{- end -}}

{{- define "outpost.connectionSecret" -}}
{{- .Values.existingConnectionStringSecret | default (printf "%s-connection-string" (include "outpost.fullname" .)) -}}
{{- end -}}

{{- define "outpost.adminSecret" -}}
{{- .Values.admin.existingSecret | default (printf "%s-admin" (include "outpost.fullname" .)) -}}
{{- end -}}

{{- define "outpost.root" -}}
{{- if eq .Values.mode "root" -}}true{{- end -}}
{{- end -}}

{{/* The address clients and child registries use. */}}
{{- define "outpost.loginServer" -}}
{{- .Values.loginServer | default (printf "%s:%v" .Values.service.clusterIP .Values.service.port) -}}
{{- end -}}

{{/* The host part of loginServer when it is not the cluster IP: the
certificate names it too. */}}
{{- define "outpost.loginHost" -}}
{{- with .Values.loginServer -}}
{{- $h := regexReplaceAll ":[0-9]+$" . "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if ne $h $.Values.service.clusterIP -}}{{ $h }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether the trust DaemonSet uses the node selector. */}}
{{- define "outpost.trustNodeSelector" -}}
{{- $td := .Values.trustDistribution -}}
{{- if kindIs "bool" $td.useNodeSelector -}}{{ $td.useNodeSelector }}
{{- else -}}{{ not $td.skipNodeSelector }}
{{- end -}}
{{- end -}}

{{- define "outpost.validate" -}}
{{- if not .Values.service.clusterIP -}}
{{- fail "service.clusterIP is required: choose a free IP of the cluster's service range (nodes reach the registry at it and the certificate names it)" -}}
{{- end -}}
{{- if eq .Values.mode "root" -}}
{{- if or .Values.connectionString .Values.existingConnectionStringSecret -}}
{{- fail "mode root takes no connection string: the root has no parent. Remove connectionString and existingConnectionStringSecret, or set mode: connected to run a connected registry" -}}
{{- end -}}
{{- else if and (not .Values.connectionString) (not .Values.existingConnectionStringSecret) -}}
{{- fail "connectionString is required (or existingConnectionStringSecret): get it on the parent with outpost connected-registry get-settings --generate-password 1; or set mode: root to deploy the root registry, which has no parent" -}}
{{- end -}}
{{- $tls := .Values.tls -}}
{{- if and $tls.secret (or $tls.crt $tls.key $tls.cacrt) -}}
{{- fail "tls.secret and tls.crt/tls.key/tls.cacrt are two ways of giving your certificate: keep one (tls.secret names an existing kubernetes.io/tls Secret holding ca.crt too)" -}}
{{- end -}}
{{- if and $tls.crt (not $tls.key) -}}
{{- fail "tls.key is required with tls.crt" -}}
{{- end -}}
{{- if and (or $tls.key $tls.cacrt) (not $tls.crt) -}}
{{- fail "tls.crt is required with tls.key and tls.cacrt" -}}
{{- end -}}
{{- range $k := list "crt" "key" "cacrt" -}}
{{- if contains "-----BEGIN" (index $tls $k) -}}
{{- fail (printf "tls.%s must be base64-encoded PEM (base64 -w0 file.pem), not the PEM text itself" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the CA certificate nodes must trust. */}}
{{- define "outpost.caSecret" -}}
{{- if eq (include "outpost.tlsMode" .) "auto" -}}{{ .Release.Name }}-ca-cert
{{- else -}}{{ include "outpost.tlsSecret" . }}
{{- end -}}
{{- end -}}
