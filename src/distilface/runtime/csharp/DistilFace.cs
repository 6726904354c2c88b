// DistilFace's C runtime from C#: Unity, Godot (.NET), any .NET or Mono program. P/Invoke into
// libdistilface (`distilface export MODEL --native -o kit/model.dfn --engine-kit` writes the
// library, dfstep.h and this file beside the model; docs/engines.md).
//
//   using (var model = DistilFace.Model.Load("model.dfn"))   // or Model.Load(bytes, "model.dfn")
//   using (var stream = model.CreateStream(30.0, smooth: false, inputRateHz: 48000)) {
//       var frames = new float[4 * model.Outputs];             // room for 4 frames a push
//       int n = stream.Push(audio, audio.Length, frames);       // n frames of model.Outputs curves
//   }
//
// A Stream is not thread-safe: push from one thread (an audio callback may push and hand the
// frames to the game thread through its own queue). Frames that do not fit the buffer wait for
// the next push; Finish pushes the end of the audio (call it until it returns 0).
//
// Memory: the native model lives until the Model and every Stream of it are disposed or
// finalized, in any order (a counted reference): disposing the Model while a Stream still runs
// is safe (the stream keeps the weights), and a Stream left to the garbage collector neither
// leaks nor pins its Model. Samples that are NaN or infinite are taken as silence (in C).
using System;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace DistilFace
{
    public sealed class DistilFaceException : Exception
    {
        public DistilFaceException(string message) : base(message) { }
    }

    static class Native
    {
        const string Lib = "distilface";  // libdistilface.so, distilface.dll, libdistilface.dylib
        public const int Abi = 4;         // DF_ABI of dfstep.h

        [DllImport(Lib)] public static extern int df_abi();
        [DllImport(Lib)] public static extern IntPtr df_model_load(byte[] path, byte[] err, UIntPtr errlen);
        [DllImport(Lib)] public static extern IntPtr df_model_load_memory(byte[] data, UIntPtr size, byte[] name,
                                                                          byte[] err, UIntPtr errlen);
        [DllImport(Lib)] public static extern int df_model_outputs(IntPtr model);
        [DllImport(Lib)] public static extern IntPtr df_model_name(IntPtr model, int i);
        [DllImport(Lib)] public static extern int df_model_lookahead_samples(IntPtr model);
        [DllImport(Lib)] public static extern IntPtr df_model_stream(IntPtr model, double fps, float[] weights);
        [DllImport(Lib)] public static extern void df_model_free(IntPtr model);
        [DllImport(Lib)] public static extern int df_stream_set_input_rate(IntPtr stream, int rateHz);
        [DllImport(Lib)] public static extern long df_stream_push(IntPtr stream, float[] audio, long n, int final,
                                                                  float[] frames, long cap);
        [DllImport(Lib)] public static extern void df_stream_reset(IntPtr stream);
        [DllImport(Lib)] public static extern void df_stream_free(IntPtr stream);

        // DF_ERR_* of dfstep.h
        public static string Error(long code)
        {
            switch (code)
            {
                case -1: return "ABI mismatch";
                case -2: return "audio too short for one encoder step";
                case -3: return "frame index outside the steps";
                case -4: return "out of memory";
                case -5: return "stream state out of order (a push after the end: call Reset)";
                case -6: return "sample rate not supported";
                case -7: return "bad argument (a negative count, or a missing buffer)";
                default: return "error " + code;
            }
        }
    }

    /// <summary>A student loaded from a .dfn file: its curves and what a stream of it needs.</summary>
    public sealed class Model : IDisposable
    {
        IntPtr handle;
        int openStreams;   // streams not yet disposed or finalized
        int references = 1;  // this Model (until disposed or finalized) + openStreams: at 0 the native model goes
        int disposed;
        public int Outputs { get; private set; }
        /// <summary>Curve names, one per output (ARKit blendshape names for the shipped models).</summary>
        public string[] Names { get; private set; }
        /// <summary>16 kHz samples after a frame's time that must arrive before it comes out
        /// (the model's future context; ensemble smoothing adds one frame's worth).</summary>
        public int LookaheadSamples { get; private set; }

        Model(IntPtr handle)
        {
            this.handle = handle;
            Outputs = Native.df_model_outputs(handle);
            Names = new string[Outputs];
            for (int i = 0; i < Outputs; i++) Names[i] = Marshal.PtrToStringAnsi(Native.df_model_name(handle, i));
            LookaheadSamples = Native.df_model_lookahead_samples(handle);
        }

        /// <summary>Loads a .dfn file; throws DistilFaceException naming the file and the problem
        /// (missing, not a .dfn, truncated, over-long) or a library of another ABI.</summary>
        public static Model Load(string path)
        {
            CheckAbi();
            if (path == null) throw new ArgumentNullException("path");
            var err = new byte[512];
            return Loaded(Native.df_model_load(Utf8(path), err, (UIntPtr)err.Length), err);
        }

        /// <summary>Loads a .dfn from its bytes (an asset bundle, Android's APK, a download: where
        /// there is no file path); name stands for the file in error messages.</summary>
        public static Model Load(byte[] data, string name = "model.dfn")
        {
            CheckAbi();
            if (data == null) throw new ArgumentNullException("data");
            var err = new byte[512];
            return Loaded(Native.df_model_load_memory(data, (UIntPtr)data.Length, Utf8(name ?? "model.dfn"), err,
                                                      (UIntPtr)err.Length), err);
        }

        static void CheckAbi()
        {
            int abi = Native.df_abi();
            if (abi != Native.Abi)
                throw new DistilFaceException("libdistilface has ABI " + abi + ", this binding speaks " + Native.Abi);
        }

        static Model Loaded(IntPtr h, byte[] err)
        {
            if (h == IntPtr.Zero)
            {
                int len = Array.IndexOf(err, (byte)0);
                throw new DistilFaceException(Encoding.UTF8.GetString(err, 0, len < 0 ? err.Length : len));
            }
            return new Model(h);
        }

        /// <summary>A stream at fps frames per second of audio at inputRateHz (resampled to 16 kHz
        /// in C); smooth: ensemble smoothing with weights 0.25, 0.5, 0.25 (one frame more of
        /// latency).</summary>
        public Stream CreateStream(double fps = 30.0, bool smooth = false, int inputRateHz = 16000)
        {
            if (Volatile.Read(ref disposed) != 0) throw new ObjectDisposedException("Model");
            IntPtr s = Native.df_model_stream(handle, fps, smooth ? new float[] { 0.25f, 0.5f, 0.25f } : null);
            GC.KeepAlive(this);  // no finalizer may free the model during the call
            if (s == IntPtr.Zero) throw new DistilFaceException("cannot stream at " + fps + " fps");
            int r = Native.df_stream_set_input_rate(s, inputRateHz);
            if (r != 0)
            {
                Native.df_stream_free(s);
                throw new DistilFaceException("cannot stream " + inputRateHz + " Hz audio: " + Native.Error(r));
            }
            Interlocked.Increment(ref openStreams);
            Interlocked.Increment(ref references);
            return new Stream(this, s);
        }

        /// <summary>A stream's end (Dispose, or its finalizer: maybe on the finalizer thread).</summary>
        internal void StreamClosed()
        {
            Interlocked.Decrement(ref openStreams);
            Release();
        }

        void Release()
        {
            if (Interlocked.Decrement(ref references) == 0)
            {
                IntPtr h = Interlocked.Exchange(ref handle, IntPtr.Zero);
                if (h != IntPtr.Zero) Native.df_model_free(h);
            }
        }

        /// <summary>Streams of this model not yet disposed or finalized.</summary>
        public int OpenStreams { get { return Volatile.Read(ref openStreams); } }

        /// <summary>No new streams from this model; its weights are freed once its open streams
        /// are disposed or finalized too (at once when there are none).</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref disposed, 1) == 0) Release();
            GC.SuppressFinalize(this);
        }

        ~Model() { if (Interlocked.Exchange(ref disposed, 1) == 0) Release(); }

        static byte[] Utf8(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            Array.Resize(ref b, b.Length + 1);  // NUL-terminated
            return b;
        }
    }

    /// <summary>Audio in, animation frames out, push by push (docs/runtime.md: the frames equal
    /// offline animation of the whole signal).</summary>
    public sealed class Stream : IDisposable
    {
        readonly Model model;  // the stream reads the model's weights: keep it alive
        IntPtr handle;

        internal Stream(Model model, IntPtr handle) { this.model = model; this.handle = handle; }

        public int Outputs { get { return model.Outputs; } }

        /// <summary>Pushes audio[0..count) (mono, at the stream's input rate) and writes the frames
        /// it completes into frames (rows of Outputs floats, as many as fit); returns how many.</summary>
        public int Push(float[] audio, int count, float[] frames) { return Call(audio, count, 0, frames); }

        /// <summary>Ends the audio (the future context of the last frames is taken as silence) and
        /// writes the frames it completes; call again until it returns 0. Then Reset.</summary>
        public int Finish(float[] frames) { return Call(null, 0, 1, frames); }

        /// <summary>Forgets all audio and state: the next push starts a new stream at time 0.</summary>
        public void Reset()
        {
            if (handle == IntPtr.Zero) throw new ObjectDisposedException("Stream");
            Native.df_stream_reset(handle);
            GC.KeepAlive(this);  // see Call
        }

        int Call(float[] audio, int count, int final, float[] frames)
        {
            if (handle == IntPtr.Zero) throw new ObjectDisposedException("Stream");
            if (count < 0 || (count > 0 && (audio == null || count > audio.Length)))
                throw new ArgumentOutOfRangeException("count", "count must be within the audio buffer");
            if (frames == null || frames.Length < Outputs)
                throw new ArgumentException("frames must hold at least one frame of " + Outputs + " floats");
            long n = Native.df_stream_push(handle, audio, count, final, frames, frames.Length / Outputs);
            // Without this the object is unreachable once the handle is loaded, and its finalizer
            // could free the stream (and the model) while C still runs on it.
            GC.KeepAlive(this);
            if (n < 0) throw new DistilFaceException("stream: " + Native.Error(n));
            return (int)n;
        }

        public void Dispose()
        {
            Close();
            GC.SuppressFinalize(this);
        }

        ~Stream() { Close(); }

        void Close()
        {
            IntPtr h = Interlocked.Exchange(ref handle, IntPtr.Zero);
            if (h == IntPtr.Zero) return;
            Native.df_stream_free(h);
            model.StreamClosed();
        }
    }
}
