{{/* Names and labels shared by every template. */}}

{{- define "cinema.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cinema.commonLabels" -}}
app.kubernetes.io/part-of: cinema
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of one service's server pods: ctx = dict "root" $ "name" <service>. */}}
{{- define "cinema.selector" -}}
app: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Selector of one store's pods: ctx = dict "root" $ "store" <store>. */}}
{{- define "cinema.storeSelector" -}}
app: {{ .store }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: store
{{- end -}}

{{- define "cinema.storesSecret" -}}
{{ include "cinema.fullname" . }}-stores
{{- end -}}

{{/* Store endpoints (in-chart Services or the external values). */}}
{{- define "cinema.postgresHost" -}}
{{- if .Values.stores.external -}}
{{- required "stores.postgres.host is required when stores.external is true" .Values.stores.postgres.host -}}
{{- else -}}
{{- include "cinema.fullname" . }}-postgres
{{- end -}}
{{- end -}}

{{- define "cinema.mongoUrl" -}}
{{- if .Values.stores.external -}}
{{- required "stores.mongo.url is required when stores.external is true" .Values.stores.mongo.url -}}
{{- else -}}
{{- printf "mongodb://%s-mongo:27017/" (include "cinema.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "cinema.redisUrl" -}}
{{- if .Values.stores.external -}}
{{- required "stores.redis.url is required when stores.external is true" .Values.stores.redis.url -}}
{{- else -}}
{{- printf "redis://%s-redis:6379/0" (include "cinema.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "cinema.natsUrl" -}}
{{- if .Values.stores.external -}}
{{- required "stores.nats.url is required when stores.external is true" .Values.stores.nats.url -}}
{{- else -}}
{{- printf "nats://%s-nats:4222" (include "cinema.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* PostgreSQL URL without the password: asyncpg takes it from PGPASSWORD (stores Secret). */}}
{{- define "cinema.databaseUrl" -}}
{{- $pg := .root.Values.stores.postgres -}}
{{- printf "postgresql://%s@%s:%d/%s?sslmode=%s" $pg.user (include "cinema.postgresHost" .root) (int $pg.port) .database $pg.sslmode -}}
{{- end -}}

{{/* A service that updates Mongo documents in place (movie) must stay at one replica on FerretDB v1 (no same-document isolation). */}}
{{- define "cinema.pinned" -}}
{{- if and .svc.mongo .svc.mongo.oneReplicaOnFerretdb (eq .root.Values.stores.mongo.flavor "ferretdb") -}}true{{- end -}}
{{- end -}}

{{/* The port a service serves on: grpcPort, or httpPort for protocol http. ctx = the service's values */}}
{{- define "cinema.port" -}}
{{- if eq (.protocol | default "grpc") "http" }}{{ .httpPort }}{{ else }}{{ .grpcPort }}{{ end -}}
{{- end -}}

{{/* Environment of one service, shared by its Deployment and its migration Job.
     ctx = dict "root" $ "name" <service> "svc" <values> */}}
{{- define "cinema.env" -}}
{{- $prefix := upper .name -}}
{{- $full := include "cinema.fullname" .root -}}
- name: {{ $prefix }}_SERVICE_NAME
  value: {{ .name | quote }}
- name: {{ $prefix }}_SERVICE_VERSION
  value: {{ .root.Values.image.tag | quote }}
{{- $kind := ternary "HTTP" "GRPC" (eq (.svc.protocol | default "grpc") "http") }}
- name: {{ $prefix }}_{{ $kind }}_HOST
  value: "0.0.0.0"
- name: {{ $prefix }}_{{ $kind }}_PORT
  value: {{ include "cinema.port" .svc | quote }}
- name: {{ $prefix }}_METRICS_HOST
  value: "0.0.0.0"
- name: {{ $prefix }}_METRICS_PORT
  value: {{ .svc.metricsPort | quote }}
- name: {{ $prefix }}_JWT_ISSUER
  value: {{ .root.Values.auth.issuer | quote }}
- name: {{ $prefix }}_JWT_AUDIENCE
  value: {{ .root.Values.auth.audience | quote }}
- name: {{ $prefix }}_JWKS_SOURCE
  value: {{ if .root.Values.auth.jwks }}"/var/run/cinema/jwks/jwks.json"{{ else }}{{ .root.Values.auth.jwksUri | quote }}{{ end }}
{{- if ne .svc.nats false }}
- name: {{ $prefix }}_NATS_URL
  value: {{ include "cinema.natsUrl" .root | quote }}
{{- end }}
{{- if .svc.postgres }}
- name: {{ $prefix }}_DATABASE_URL
  value: {{ include "cinema.databaseUrl" (dict "root" .root "database" .svc.postgres.database) | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "cinema.storesSecret" .root }}
      key: postgres-password
{{- end }}
{{- if .svc.mongo }}
- name: {{ $prefix }}_MONGO_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "cinema.storesSecret" .root }}
      key: mongo-url
- name: {{ $prefix }}_MONGO_DATABASE
  value: {{ .svc.mongo.database | quote }}
{{- end }}
{{- if .svc.redis }}
- name: {{ $prefix }}_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "cinema.storesSecret" .root }}
      key: redis-url
{{- end }}
{{- range $callee := (.svc.calls | default list) }}
{{- $c := index $.root.Values.services $callee }}
- name: {{ $prefix }}_{{ upper $callee }}_ADDRESS
  value: {{ printf "%s-%s:%d" $full $callee (include "cinema.port" $c | int) | quote }}
{{- if $c.issuesTokens }}
- name: {{ $prefix }}_TOKEN_URL
  value: {{ printf "http://%s-%s:%d/oauth2/token" $full $callee (include "cinema.port" $c | int) | quote }}
{{- end }}
{{- end }}
{{- if .svc.issuesTokens }}
- name: {{ $prefix }}_ISSUER
  value: {{ .root.Values.auth.issuer | quote }}
- name: {{ $prefix }}_AUDIENCE
  value: {{ .root.Values.auth.audience | quote }}
{{- end }}
{{- range $f := (.svc.secretFiles | default list) }}
- name: {{ $prefix }}_{{ $f.env }}
  value: {{ printf "/var/run/cinema/%s/%s" $f.secretName $f.key | quote }}
{{- end }}
{{- end -}}
