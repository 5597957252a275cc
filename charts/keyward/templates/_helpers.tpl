{{/* Names: `<fullname>-operator`, `<fullname>-webhook`; 63 characters at most (DNS labels). */}}
{{- define "keyward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyward.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "keyward.operator.fullname" -}}
{{- printf "%s-operator" (include "keyward.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyward.webhook.fullname" -}}
{{- printf "%s-webhook" (include "keyward.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyward.operator.serviceAccountName" -}}
{{- default (include "keyward.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "keyward.webhook.serviceAccountName" -}}
{{- default (include "keyward.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "keyward.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "keyward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keyward
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "keyward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyward.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "keyward.componentLabels" -}}
{{ include "keyward.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "keyward.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Where a component's Postgres URL comes from: (dict "ctx" $ "role" "operator") gives a Secret name
and key. A role without existingSecret/url falls back as documented in values.yaml (migrate → the
operator's); a role with neither fails with the value to set.
*/}}
{{- define "keyward.postgres.secret" -}}
{{- $pg := .ctx.Values.postgres }}
{{- $role := .role }}
{{- $cfg := index $pg $role }}
{{- if and (eq $role "migrate") (not $cfg.existingSecret) (not $cfg.url) }}
{{- $role = "operator" }}
{{- $cfg = $pg.operator }}
{{- end }}
{{- if and $cfg.existingSecret $cfg.url }}
{{- fail (printf "postgres.%s: set existingSecret or url, not both" $role) }}
{{- else if $cfg.existingSecret }}
{{- dict "name" $cfg.existingSecret "key" $cfg.existingSecretKey "role" $role | toJson }}
{{- else if $cfg.url }}
{{- dict "name" (printf "%s-postgres-%s" (include "keyward.fullname" .ctx) $role) "key" "url" "role" $role | toJson }}
{{- else }}
{{- fail (printf "postgres.%s: set postgres.%s.existingSecret (a Secret holding the %s role's Postgres URL) or postgres.%s.url" $role $role $role $role) }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints with the component's selector filled in where the value leaves it out:
(dict "ctx" $ "component" "webhook" "constraints" .Values.webhook.topologySpreadConstraints).
*/}}
{{- define "keyward.topologySpread" -}}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "keyward.selectorLabels" (dict "ctx" $.ctx "component" $.component) | fromYaml)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- with $out }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scheduling values shared by every pod: (dict "ctx" $ "values" .Values.webhook). */}}
{{- define "keyward.scheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Extra KEYWARD_* variables from a values map, sorted for a stable rendering. */}}
{{- define "keyward.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* A store URL's volume, from keyward.postgres.secret's (or .writeSecret's) JSON. */}}
{{- define "keyward.postgres.volume" -}}
- name: {{ .volume | default "store-url" }}
  secret:
    secretName: {{ .name }}
    defaultMode: 288 # 0440 in decimal, read alike by YAML 1.1 and 1.2
    items:
      - key: {{ .key }}
        path: url
{{- end }}

{{- define "keyward.storeUrlFile" -}}/etc/keyward/store/url{{- end }}

{{/*
The webhook's write URL (postgres.webhookWrite), as keyward.postgres.secret's JSON, or "" when
unset: it is optional, unlike the other roles.
*/}}
{{- define "keyward.postgres.writeSecret" -}}
{{- $cfg := .Values.postgres.webhookWrite }}
{{- if and $cfg.existingSecret $cfg.url }}
{{- fail "postgres.webhookWrite: set existingSecret or url, not both" }}
{{- else if $cfg.existingSecret }}
{{- dict "name" $cfg.existingSecret "key" $cfg.existingSecretKey "volume" "store-write-url" | toJson }}
{{- else if $cfg.url }}
{{- dict "name" (printf "%s-postgres-webhook-write" (include "keyward.fullname" .)) "key" "url" "volume" "store-write-url" | toJson }}
{{- end }}
{{- end }}

{{/* The Secret with the webhook's serving certificate. */}}
{{- define "keyward.webhook.tlsSecret" -}}
{{- $tls := .Values.webhook.tls }}
{{- if and $tls.existingSecret $tls.certManager.enabled }}
{{- fail "webhook.tls: set existingSecret or certManager.enabled, not both" }}
{{- else if $tls.existingSecret }}
{{- $tls.existingSecret }}
{{- else if $tls.certManager.enabled }}
{{- printf "%s-tls" (include "keyward.webhook.fullname" .) }}
{{- else }}
{{- fail "webhook.tls.enabled: set webhook.tls.existingSecret (a kubernetes.io/tls Secret) or webhook.tls.certManager.enabled with an issuerRef" }}
{{- end }}
{{- end }}

{{- define "keyward.webhook.scheme" -}}
{{- ternary "HTTPS" "HTTP" .Values.webhook.tls.enabled }}
{{- end }}

{{/* Egress every keyward pod needs under networkPolicy: Postgres, and DNS. */}}
{{- define "keyward.networkPolicy.egress" -}}
- to:
    {{- toYaml .np.postgres.to | nindent 4 }}
  ports:
    - protocol: TCP
      port: {{ .np.postgres.port }}
{{- if .np.dns.enabled }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- end }}
