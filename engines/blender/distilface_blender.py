# DistilFace animation into Blender: a `distilface animate AUDIO -o face.glb` file opens as the
# face with its 52 ARKit shape keys, the animation on whole frames of a scene at the animation's
# frame rate, and the speech in the sequencer at frame 0, so playback is lip-synced.
#
# Blender's own glTF importer reads the file too (File > Import > glTF 2.0), but converts the
# keyframe times with whatever frame rate the scene has (24 fps by default: 30 fps keys land on
# fractional frames), starts the keys at frame 0 while the scene starts at 1, and leaves the sound
# out (glTF cannot carry audio). This does those three things around the same importer.
#
# As an add-on: Edit > Preferences > Add-ons > Install... this file; then File > Import >
# "DistilFace animation (.glb)". As a script (no add-on installed):
#
#     blender --python engines/blender/distilface_blender.py -- face.glb [--audio speech.wav]
#             [--save face.blend]
#
# `-b` before `--python` runs it without a window (with --save). Needs Blender >= 3.3 and the
# numpy its glTF importer imports (Blender from blender.org bundles it; docs/engines.md, Blender).
# docs/engines.md.

bl_info = {
    "name": "DistilFace animation (.glb)",
    "author": "DistilFace",
    "version": (1, 0, 0),
    "blender": (3, 3, 0),
    "location": "File > Import > DistilFace animation (.glb)",
    "description": "A distilface animate .glb: the face, its ARKit shape keys, the animation "
                   "at its own frame rate and the speech in the sequencer",
    "category": "Import-Export",
}

import json
import os
import struct
import sys

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A  # "JSON"


def read_glb_json(path):
    """The JSON chunk of a .glb as a dict; ValueError naming the file when it is not a GLB."""
    with open(path, "rb") as f:
        header = f.read(20)
        if len(header) < 20:
            raise ValueError(f"{path}: not a glTF binary file (only {len(header)} bytes)")
        magic, version, _length, chunk_len, chunk_type = struct.unpack("<5I", header)
        if magic != GLB_MAGIC or chunk_type != CHUNK_JSON:
            raise ValueError(f"{path}: not a glTF binary file (.glb)")
        if version != 2:
            raise ValueError(f"{path}: glTF version {version}, this reads version 2")
        return json.loads(f.read(chunk_len).decode("utf-8"))


def animation_info(doc, glb_path):
    """(fps, keyframe count, sound file or None) of the file's first animation: `fps` and
    `soundFile` are in its extras when distilface wrote it (distilface.rig.gltf)."""
    anims = doc.get("animations") or []
    if not anims:
        raise ValueError(f"{glb_path}: no animation in the file (the face alone: write it with "
                         f"`distilface animate AUDIO -o {os.path.basename(glb_path)}`)")
    extras = anims[0].get("extras") or {}
    sampler = anims[0]["samplers"][0]
    keys = doc["accessors"][sampler["input"]]["count"]
    fps = float(extras.get("fps") or 0)
    if fps <= 0:
        # Not written by distilface: the frame rate from the first two key times is not readable
        # here without the binary chunk, so take the key count over the duration.
        times = doc["accessors"][sampler["input"]]
        duration = float(times["max"][0]) - float(times["min"][0])
        fps = (keys - 1) / duration if keys > 1 and duration > 0 else 30.0
    return fps, keys, extras.get("soundFile")


def find_sound(sound, glb_path):
    """The sound file named in the .glb, looked for as written (absolute, or relative to the
    directory `distilface animate` ran in), then beside the .glb. None when it is nowhere."""
    if not sound:
        return None
    here = os.path.dirname(os.path.abspath(glb_path))
    for candidate in (sound, os.path.join(here, sound), os.path.join(here, os.path.basename(sound))):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


def set_scene_rate(scene, fps):
    """Blender's frame rate is fps / fps_base with an integer fps: 30 -> 30 / 1, 29.97 -> 30 / 1.001."""
    whole = max(1, round(fps))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps


def _numpy_for_the_importer():
    """Blender 3.4's glTF importer calls `np.bool`, which numpy 1.24-1.26 removed (2.0 has it again,
    as `np.bool_`): Debian 12's blender with its python3-numpy fails on it. Same alias as numpy 2."""
    try:
        import numpy as np
    except ImportError as e:
        raise RuntimeError("Blender's glTF importer needs numpy in Blender's Python: a Blender from "
                           "blender.org bundles it; Debian's blender needs python3-numpy") from e
    if not hasattr(np, "bool"):
        np.bool = np.bool_


def _snap_keys_to_frames(anim_data):
    """Key times are float32 seconds (k / 30 in the file), so k / 30 * 30 comes out as 62.999996:
    put keys within 1e-3 of a whole frame on it, handles moved with them."""
    if anim_data is None or anim_data.action is None:
        return
    for fc in anim_data.action.fcurves:
        for p in fc.keyframe_points:
            shift = round(p.co.x) - p.co.x
            if 0 < abs(shift) < 1e-3:
                p.co.x += shift
                p.handle_left.x += shift
                p.handle_right.x += shift
        fc.update()


def import_animation(context, glb_path, audio_path=None):
    """Imports the face and its animation, then the speech; returns the face object."""
    import bpy

    if audio_path and not os.path.isfile(audio_path):
        raise FileNotFoundError(f"{audio_path}: no such sound file")
    doc = read_glb_json(glb_path)
    _numpy_for_the_importer()
    fps, keys, sound = animation_info(doc, glb_path)
    scene = context.scene
    # The importer places each key at time * scene fps (its animation code reads the scene's rate),
    # so set the rate first: keys then land on whole frames 0 .. keys - 1.
    set_scene_rate(scene, fps)
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.gltf(filepath=glb_path)
    if "FINISHED" not in result:
        raise RuntimeError(f"{glb_path}: Blender's glTF importer failed ({result})")
    faces = [o for o in bpy.data.objects if o not in before and o.type == "MESH"
             and o.data.shape_keys is not None]
    if not faces:
        raise RuntimeError(f"{glb_path}: the importer made no mesh with shape keys")
    face = faces[0]
    _snap_keys_to_frames(face.data.shape_keys.animation_data)
    scene.frame_start = 0  # the first key is at time 0
    scene.frame_end = max(0, keys - 1)
    scene.frame_set(0)

    audio = os.path.abspath(audio_path) if audio_path else find_sound(sound, glb_path)
    if audio:
        if scene.sequence_editor is None:
            scene.sequence_editor_create()
        strip = scene.sequence_editor.sequences.new_sound(
            name=os.path.basename(audio), filepath=audio, channel=1, frame_start=0)
        strip["distilface"] = True
        # Playback drops frames rather than drifting from the sound.
        scene.sync_mode = "AUDIO_SYNC"
    elif sound:
        print(f"distilface: {glb_path}: sound file {sound!r} not found; give it with --audio",
              file=sys.stderr)
    context.view_layer.objects.active = face
    return face


try:
    import bpy
    from bpy.props import StringProperty
    from bpy_extras.io_utils import ImportHelper

    class DISTILFACE_OT_import_glb(bpy.types.Operator, ImportHelper):
        """Import a distilface animate .glb with its speech, at the animation's frame rate"""
        bl_idname = "import_anim.distilface_glb"
        bl_label = "Import DistilFace animation"
        bl_options = {"REGISTER", "UNDO"}
        filename_ext = ".glb"
        filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})
        audio: StringProperty(name="Sound file", subtype="FILE_PATH", default="",
                              description="The speech, when it is not where the .glb says")

        def execute(self, context):
            try:
                import_animation(context, self.filepath, self.audio or None)
            except (OSError, ValueError, RuntimeError) as e:
                self.report({"ERROR"}, str(e))
                return {"CANCELLED"}
            return {"FINISHED"}

    def _menu(self, context):
        self.layout.operator(DISTILFACE_OT_import_glb.bl_idname, text="DistilFace animation (.glb)")

    def register():
        bpy.utils.register_class(DISTILFACE_OT_import_glb)
        bpy.types.TOPBAR_MT_file_import.append(_menu)

    def unregister():
        bpy.types.TOPBAR_MT_file_import.remove(_menu)
        bpy.utils.unregister_class(DISTILFACE_OT_import_glb)
except ImportError:  # read outside Blender (its tests import the helpers above)
    pass


def main(argv):
    import argparse

    import bpy

    p = argparse.ArgumentParser(prog="blender --python distilface_blender.py --",
                                description="Open a distilface animate .glb in Blender with its speech.")
    p.add_argument("glb")
    p.add_argument("--audio", help="the speech, when it is not where the .glb says")
    p.add_argument("--save", help="write the scene to this .blend")
    p.add_argument("--empty", action="store_true",
                   help="start from an empty scene (no default cube, camera and light)")
    a = p.parse_args(argv)
    if a.empty:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        face = import_animation(bpy.context, os.path.abspath(a.glb), a.audio)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"distilface: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"distilface: {a.glb}: {len(face.data.shape_keys.key_blocks) - 1} shape keys, frames "
          f"{bpy.context.scene.frame_start}..{bpy.context.scene.frame_end} at "
          f"{bpy.context.scene.render.fps / bpy.context.scene.render.fps_base:g} fps")
    if a.save:
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(a.save))
        print(f"distilface: wrote {a.save}")


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
