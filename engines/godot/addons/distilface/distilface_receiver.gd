# DistilFace frames onto a face in Godot 3: connects to `distilface stream --output ws`
# (docs/stream.md) and sets each frame's curves on the blend shapes of a MeshInstance.
#
# Add the node, point `mesh_path` at the face's MeshInstance, run `distilface stream --output ws`.
# Curve names meet blend shape names case-insensitively (ARKit "jawOpen", VRM perfect-sync
# "JawOpen"); curves the mesh lacks are skipped. The newest frame is applied once per idle frame
# (frames that arrive faster than the game renders are not queued up), and every frame is also
# emitted as `frame_received` for scripts that want them all. Reconnects after `reconnect_s` when
# the server is not there or goes away. docs/engines.md.
extends Node
class_name DistilFaceReceiver

signal frame_received(frame)   # the JSON frame as a Dictionary: frame, time_s, blendshapes, ...
signal stream_started(info)    # {"type": "start", "stream", "fps", "names", ...}
signal stream_ended(info)      # {"type": "end", "stream", "frames", "reason"}

export var url := "ws://127.0.0.1:8765/frames"
export(NodePath) var mesh_path: NodePath
export var weight_scale := 1.0  # curves are 0..1 like Godot's blend shape weights
export var reconnect_s := 1.0

var frames_received := 0        # frames since the node started
var last_frame := {}            # the newest frame (its "blendshapes": name -> value)

var _ws := WebSocketClient.new()
var _mesh: MeshInstance = null
var _shape_of := {}             # lower-case curve name -> "blend_shapes/<the mesh's name>"
var _connected := false
var _retry_s := 0.0
var _pending := {}              # blendshapes of the newest frame not yet applied


func _ready() -> void:
	_ws.connect("connection_established", self, "_on_open")
	_ws.connect("connection_closed", self, "_on_closed")
	_ws.connect("connection_error", self, "_on_error")
	_ws.connect("data_received", self, "_on_data")
	if mesh_path:
		set_mesh(get_node(mesh_path))
	_open()


func set_mesh(mesh: MeshInstance) -> void:
	# targets `mesh`'s blend shapes (call again when the mesh changes at run time)
	_mesh = mesh
	_shape_of.clear()
	if mesh == null or mesh.mesh == null:
		return
	for i in range(mesh.mesh.get_blend_shape_count()):
		var name: String = mesh.mesh.get_blend_shape_name(i)
		_shape_of[name.to_lower()] = "blend_shapes/" + name


func _open() -> void:
	var err = _ws.connect_to_url(url)
	if err != OK:
		push_warning("DistilFace: cannot connect to %s (error %d)" % [url, err])
		_retry_s = reconnect_s


func _on_open(_protocol: String) -> void:
	_connected = true


func _on_closed(_clean: bool) -> void:
	_connected = false
	_retry_s = reconnect_s


func _on_error() -> void:
	_connected = false
	_retry_s = reconnect_s


func _on_data() -> void:
	var peer = _ws.get_peer(1)
	while peer.get_available_packet_count() > 0:
		var parsed = JSON.parse(peer.get_packet().get_string_from_utf8())
		if parsed.error != OK or typeof(parsed.result) != TYPE_DICTIONARY:
			continue
		var msg: Dictionary = parsed.result
		match msg.get("type", ""):
			"frame":
				frames_received += 1
				last_frame = msg
				_pending = msg.get("blendshapes", {})
				emit_signal("frame_received", msg)
			"start":
				emit_signal("stream_started", msg)
			"end":
				emit_signal("stream_ended", msg)


func _process(delta: float) -> void:
	if _retry_s > 0.0:
		_retry_s -= delta
		if _retry_s <= 0.0:
			_open()
		return
	_ws.poll()
	apply_pending()


func apply_pending() -> void:
	# sets the newest frame's curves on the mesh (called every idle frame)
	if _pending.empty() or _mesh == null:
		return
	for name in _pending:
		var prop = _shape_of.get(name.to_lower())
		if prop != null:
			_mesh.set(prop, float(_pending[name]) * weight_scale)
	_pending = {}
