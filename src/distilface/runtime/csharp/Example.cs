// The C# binding end to end, as csrc/dfanimate.c does it in C: mono 16-bit little-endian PCM on
// stdin at any rate, frames as CSV on stdout (frame, time_s, one column per curve).
//
//   mcs -out:animate.exe DistilFace.cs Example.cs
//   ffmpeg -i speech.wav -f s16le -ac 1 -ar 48000 - | LD_LIBRARY_PATH=. mono animate.exe model.dfn 30 48000 > curves.csv
using System;
using System.Globalization;
using System.IO;
using System.Text;

static class Example
{
    static int Main(string[] args)
    {
        if (args.Length < 1 || args.Length > 4)
        {
            Console.Error.WriteLine("usage: animate.exe MODEL.dfn [FPS=30] [RATE_HZ=16000] [smooth] < audio.s16le > frames.csv");
            return 2;
        }
        var inv = CultureInfo.InvariantCulture;
        double fps = 30.0;
        int rate = 16000;
        if ((args.Length > 1 && !double.TryParse(args[1], NumberStyles.Float, inv, out fps)) ||
            (args.Length > 2 && !int.TryParse(args[2], NumberStyles.Integer, inv, out rate)))
        {
            Console.Error.WriteLine("animate.exe: FPS and RATE_HZ are numbers (e.g. 30 48000)");
            return 2;
        }
        bool smooth = args.Length > 3 && args[3] == "smooth";
        try
        {
            using (var model = DistilFace.Model.Load(args[0]))
            using (var stream = model.CreateStream(fps, smooth, rate))
            {
                var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
                output.Write("frame,time_s");
                foreach (var name in model.Names) output.Write("," + name);
                output.Write("\n");
                var frames = new float[4 * model.Outputs];  // small on purpose: more frames wait
                var bytes = new byte[2 * 480];              // 10 ms pushes at 48 kHz
                var audio = new float[480];
                long k = 0;
                var input = Console.OpenStandardInput();
                int got, carry = 0, n;
                while ((got = input.Read(bytes, carry, bytes.Length - carry)) > 0)
                {
                    got += carry;
                    int samples = got / 2;
                    for (int i = 0; i < samples; i++) audio[i] = (short)(bytes[2 * i] | bytes[2 * i + 1] << 8) / 32768f;
                    carry = got - 2 * samples;  // an odd byte waits for its pair
                    if (carry > 0) bytes[0] = bytes[got - 1];
                    n = stream.Push(audio, samples, frames);
                    Write(output, frames, n, model.Outputs, ref k, fps);
                }
                while ((n = stream.Finish(frames)) > 0) Write(output, frames, n, model.Outputs, ref k, fps);
                output.Flush();
            }
        }
        catch (DistilFace.DistilFaceException e)
        {
            Console.Error.WriteLine("animate.exe: " + e.Message);
            return 1;
        }
        return 0;
    }

    static void Write(TextWriter w, float[] frames, int n, int outputs, ref long k, double fps)
    {
        var inv = CultureInfo.InvariantCulture;
        for (int f = 0; f < n; f++, k++)
        {
            w.Write(k.ToString(inv) + "," + (k / fps).ToString("F6", inv));
            for (int o = 0; o < outputs; o++) w.Write("," + frames[f * outputs + o].ToString("R", inv));
            w.Write("\n");
        }
    }
}
