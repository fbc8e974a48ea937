{{/*
Names: <fullname>-<service>[-<district>|-<part>]. Short enough that every Service name stays a
DNS label (63 characters).
*/}}
{{- define "wuye.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 30 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 30 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wuye.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wuye
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Pods of one workload. (dict "root" $ "service" NAME "part" PART "district" city|CODE) */}}
{{- define "wuye.selector" -}}
app.kubernetes.io/name: wuye
app.kubernetes.io/instance: {{ .root.Release.Name }}
wuye/service: {{ .service }}
wuye/part: {{ .part }}
wuye/district: {{ .district | quote }}
{{- end -}}

{{/* Merges map (index . 1) into map (index . 0), nested maps key by key; false and 0 count. */}}
{{- define "wuye.mergeInto" -}}
{{- $dst := index . 0 -}}
{{- range $key, $value := index . 1 | default dict -}}
{{- $current := get $dst $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- include "wuye.mergeInto" (list $current $value) -}}
{{- else -}}
{{- $_ := set $dst $key (deepCopy $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The plan every template renders from, set into .out.services: per enabled service, its
instances of `serve` (the city-wide one for every district not split out, then one per
district; each starts from defaults.serve), its workers (relay, consumers, timers: one set per service, since they work on the
service's one database) and its migration Job. A service that calls others gets their addresses
in WUYE_SERVICE_ENDPOINTS: the callee's city-wide Service, or where every district of the callee
has an instance of its own, its district Services ({district} is filled in by the caller).
(dict "root" $ "out" (dict))
*/}}
{{- define "wuye.plan" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $services := list -}}
{{- range $name := keys $values.services | sortAlpha -}}
{{- $svc := get $values.services $name | default dict -}}
{{- if ne (toString (dig "enabled" true $svc)) "false" -}}
{{- $serve := deepCopy $values.defaults.serve -}}
{{- include "wuye.mergeInto" (list $serve (get $svc "serve")) -}}
{{- $byDistrict := get $svc "districts" | default dict -}}
{{- $split := keys $byDistrict | sortAlpha -}}
{{- $rest := list -}}
{{- range $values.cityDistricts -}}
{{- if not (has . $split) -}}{{- $rest = append $rest . -}}{{- end -}}
{{- end -}}
{{- $singleOwner := eq (toString (dig "singleOwner" false $svc)) "true" -}}
{{- $instances := list -}}
{{- if $rest -}}
{{- $all := eq (len $rest) (len $values.cityDistricts) -}}
{{- $instances = append $instances (dict "district" "city" "name" $name "serves" $rest "all" $all "spec" $serve "given" (get $svc "serve" | default dict)) -}}
{{- end -}}
{{- range $code := $split -}}
{{- $spec := deepCopy $values.defaults.serve -}}
{{- include "wuye.mergeInto" (list $spec (get $byDistrict $code)) -}}
{{- $instances = append $instances (dict "district" $code "name" (printf "%s-%s" $name $code) "serves" (list $code) "all" false "spec" $spec "given" (get $byDistrict $code | default dict)) -}}
{{- end -}}
{{- range $instances -}}
{{- $_ := set . "singleOwner" $singleOwner -}}
{{- if $singleOwner -}}
{{- /* One pod owns the districts' in-memory state: the values' own replica count (0 or 1;
values.schema.json refuses more, and autoscaling) or 1, never defaults.serve's; no autoscaler;
no disruption budget, since on one pod it would either block every node drain (minAvailable 1)
or allow just what no budget allows (maxUnavailable 1). */ -}}
{{- $replicas := 1 -}}
{{- if hasKey .given "replicas" -}}{{- $replicas = int .given.replicas -}}{{- end -}}
{{- $_ := set .spec "replicas" $replicas -}}
{{- $_ := set .spec "autoscaling" (dict "enabled" false) -}}
{{- $_ := unset .spec "podDisruptionBudget" -}}
{{- end -}}
{{- $scaling := .spec.autoscaling -}}
{{- if and $scaling.enabled (gt (int $scaling.minReplicas) (int $scaling.maxReplicas)) -}}
{{- fail (printf "services.%s (%s): autoscaling.minReplicas %v is above maxReplicas %v" $name .district $scaling.minReplicas $scaling.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- $workers := list -}}
{{- $relay := deepCopy $values.defaults.relay -}}
{{- include "wuye.mergeInto" (list $relay (get $svc "relay")) -}}
{{- $workers = append $workers (dict "part" "relay" "args" (list "relay") "spec" $relay) -}}
{{- $consumers := get $svc "consumers" | default dict -}}
{{- range $consumer := keys $consumers | sortAlpha -}}
{{- $spec := deepCopy $values.defaults.consume -}}
{{- include "wuye.mergeInto" (list $spec (get $consumers $consumer)) -}}
{{- $workers = append $workers (dict "part" (printf "consume-%s" $consumer) "args" (list "consume" $consumer) "spec" $spec) -}}
{{- end -}}
{{- $timers := get $svc "timers" | default dict -}}
{{- if eq (toString (dig "enabled" false $timers)) "true" -}}
{{- $spec := deepCopy $values.defaults.timers -}}
{{- include "wuye.mergeInto" (list $spec (omit $timers "enabled")) -}}
{{- $workers = append $workers (dict "part" "timers" "args" (list "timers") "spec" $spec) -}}
{{- end -}}
{{- $migrate := deepCopy $values.defaults.migrate -}}
{{- include "wuye.mergeInto" (list $migrate (get $svc "migrate")) -}}
{{- $env := deepCopy ($values.env | default dict) -}}
{{- include "wuye.mergeInto" (list $env (get $svc "env")) -}}
{{- $policy := get $svc "networkPolicy" | default dict -}}
{{- $services = append $services (dict "name" $name "instances" $instances "workers" $workers "migrate" $migrate "env" $env "serveSecrets" (get $svc "serveSecrets" | default dict) "networkPolicy" $policy "calls" (get $svc "calls" | default list)) -}}
{{- end -}}
{{- end -}}
{{- $full := include "wuye.fullname" $root -}}
{{- $byName := dict -}}
{{- range $services -}}{{- $_ := set $byName .name . -}}{{- end -}}
{{- range $svc := $services -}}
{{- $endpoints := list -}}
{{- range $callee := $svc.calls -}}
{{- $target := get $byName $callee -}}
{{- if not $target -}}
{{- fail (printf "services.%s calls %s, which is not enabled" $svc.name $callee) -}}
{{- end -}}
{{- $host := printf "%s-%s-{district}" $full $callee -}}
{{- range $target.instances -}}
{{- if eq .district "city" -}}{{- $host = printf "%s-%s" $full $callee -}}{{- end -}}
{{- end -}}
{{- $endpoints = append $endpoints (printf "%s=%s.%s.svc:50051" $callee $host $root.Release.Namespace) -}}
{{- end -}}
{{- if and $endpoints (not (hasKey $svc.env "WUYE_SERVICE_ENDPOINTS")) -}}
{{- $_ := set $svc.env "WUYE_SERVICE_ENDPOINTS" (join "," $endpoints) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .out "services" $services -}}
{{- end -}}

{{- define "wuye.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "wuye.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name | replace "{service}" .service }}
      key: {{ .ref.key }}
{{- end -}}

{{/*
A pod template. (dict "root" $ "service" SVC "part" PART "district" city|CODE "args" LIST
"resources" MAP "instance" INSTANCE-or-nil "restartPolicy" Never-or-nil)
`instance` is set for `serve` pods: they get the gRPC port, probes and WUYE_DISTRICTS, and
"serveSecrets" (environment variable: Secret reference) are keys only the servers get.
*/}}
{{- define "wuye.pod" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $part := .part -}}
{{- $full := include "wuye.fullname" $root -}}
metadata:
  labels:
    {{- include "wuye.selector" . | nindent 4 }}
    app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
    {{- if ne $part "migrate" }}
    wuye/metrics: "true"
    {{- end }}
    {{- with .instance }}
    {{- /* What the district Services select: during a move to a district instance, the old pods
    keep serving the district until the new ones are ready. */}}
    {{- range .serves }}
    wuye/serves-{{ . }}: "true"
    {{- end }}
    {{- end }}
  {{- with $values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $values.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    seccompProfile: {type: RuntimeDefault}
  {{- with $values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .instance }}
  terminationGracePeriodSeconds: 30
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "wuye.selector" . | nindent 10 }}
  {{- end }}
  containers:
    - name: {{ .service }}
      image: {{ include "wuye.image" $root }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      command: ["python", "-m", "wuye.{{ .service }}"]
      args: {{ toJson .args }}
      env:
        - name: WUYE_KAFKA_BOOTSTRAP
          value: {{ $values.kafka.bootstrap | quote }}
        - name: WUYE_LOG_LEVEL
          value: {{ $values.logLevel | quote }}
        {{- include "wuye.secretEnv" (dict "env" "WUYE_DATABASE_URL" "ref" $values.secrets.databaseUrl "service" .service) | nindent 8 }}
        {{- /* Each part gets the keys it uses: bearer tokens are checked by servers only; the
        relay and the migrations need neither key. */}}
        {{- if .instance }}
        {{- include "wuye.secretEnv" (dict "env" "WUYE_TOKEN_SECRET" "ref" $values.secrets.tokenSecret "service" .service) | nindent 8 }}
        {{- with $values.secrets.tokenSecret.previousKey }}
        - name: WUYE_TOKEN_PREVIOUS_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ $values.secrets.tokenSecret.name }}
              key: {{ . }}
              optional: true
        {{- end }}
        {{- range $variable, $ref := .serveSecrets }}
        - name: {{ $variable }}
          valueFrom:
            secretKeyRef:
              name: {{ $ref.name }}
              key: {{ $ref.key }}
              {{- if $ref.optional }}
              optional: true
              {{- end }}
        {{- end }}
        {{- end }}
        {{- if not (has $part (list "relay" "migrate")) }}
        {{- include "wuye.secretEnv" (dict "env" "WUYE_PII_KEY" "ref" $values.secrets.piiKey "service" .service) | nindent 8 }}
        {{- end }}
        {{- if ne $part "migrate" }}
        - name: WUYE_METRICS_PORT
          value: "9464"
        {{- end }}
        {{- with .instance }}
        - name: WUYE_GRPC_PORT
          value: "50051"
        {{- if not .all }}
        - name: WUYE_DISTRICTS
          value: {{ join "," .serves | quote }}
        {{- end }}
        - name: WUYE_DISTRICT_ENDPOINT_TEMPLATE
          value: {{ $values.districtEndpointTemplate | default (printf "%s-%s-{district}.%s.svc:50051" $full $.service $root.Release.Namespace) | quote }}
        {{- end }}
        {{- range $key, $value := .env }}
        - name: {{ $key }}
          value: {{ $value | toString | quote }}
        {{- end }}
      {{- if ne $part "migrate" }}
      ports:
        {{- if .instance }}
        - {name: grpc, containerPort: 50051, protocol: TCP}
        {{- end }}
        - {name: metrics, containerPort: 9464, protocol: TCP}
      {{- end }}
      {{- if .instance }}
      # Native gRPC probes against grpc.health.v1 (NOT_SERVING once a stop begins). Health
      # checks queue behind calls on the same few threads: readiness sheds a saturated pod
      # quickly, liveness restarts one only after a minute without any answer.
      startupProbe:
        grpc: {port: 50051}
        periodSeconds: 2
        failureThreshold: 30
      readinessProbe:
        grpc: {port: 50051}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 2
      livenessProbe:
        grpc: {port: 50051}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 6
      lifecycle:
        # Let endpoints drop the pod before the server stops taking calls.
        preStop:
          sleep: {seconds: 5}
      {{- else if ne $part "migrate" }}
      readinessProbe:
        httpGet: {path: /metrics, port: metrics}
        periodSeconds: 10
      {{- end }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {drop: [ALL]}
      volumeMounts:
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
{{- end -}}

{{/* The edge's pods (Envoy). */}}
{{- define "wuye.edgeSelector" -}}
app.kubernetes.io/name: wuye
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: edge
wuye/service: edge
wuye/part: edge
wuye/district: city
{{- end -}}
